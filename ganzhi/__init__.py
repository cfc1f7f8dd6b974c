"""The composition package: the ``ganzhi`` command and what `up` starts."""
