"""The ledger (台账): divisions, departments, poles, terminals, city codes, sharing grants."""
