"""FIRMS CSV files read by column name."""

from __future__ import annotations

import datetime as dt

import pytest

from analytics.fire.firms import FirmsError, parse

VIIRS = """latitude,longitude,bright_ti4,scan,track,acq_date,acq_time,satellite,instrument,confidence,version,\
bright_ti5,frp,daynight
46.61234,126.98765,334.1,0.39,0.36,2026-10-20,512,N20,VIIRS,h,2.0NRT,289.3,4.7,D
"""
MODIS_ARCHIVE = """acq_time,acq_date,latitude,longitude,brightness,scan,track,satellite,confidence,version,\
bright_t31,frp,daynight,type
0330,2026-10-21,46.5,126.8,320.5,1.2,1.1,Aqua,77,6.1,290.1,12.3,D,2
"""


def test_viirs_rows_are_read_with_padded_time_and_mapped_confidence():
    (row,), errors = parse(VIIRS)
    assert errors == []
    assert row.at == dt.datetime(2026, 10, 20, 5, 12, tzinfo=dt.UTC)
    assert (row.instrument, row.satellite, row.confidence, row.brightness_k) == ("VIIRS", "N20", 0.9, 334.1)
    assert row.accuracy_m == pytest.approx(195)


def test_modis_archive_columns_in_another_order_without_instrument():
    (row,), _ = parse(MODIS_ARCHIVE)
    assert (row.instrument, row.confidence, row.fire_type, row.lat) == ("MODIS", 0.77, "2", 46.5)


def test_a_file_without_the_columns_is_refused_naming_them():
    with pytest.raises(FirmsError, match=r"missing column.*acq_time.*confidence"):
        parse("latitude,longitude,acq_date,brightness\n46.5,126.8,2026-10-21,320\n")


def test_bad_rows_are_reported_and_the_rest_read():
    text = VIIRS + "46.6,126.9,330,0.4,0.4,2026-10-20,2561,N20,VIIRS,h,2.0NRT,290,3,D\n" \
                   "x,126.9,330,0.4,0.4,2026-10-20,1200,N20,VIIRS,h,2.0NRT,290,3,D\n" \
                   "46.6,126.9,330,0.4,0.4,2026-10-20,1200,N20,VIIRS,q,2.0NRT,290,3,D\n"
    rows, errors = parse(text)
    assert len(rows) == 1
    assert [e[0] for e in errors] == [3, 4, 5]
    assert "acq_time" in errors[0][2] and "confidence" in errors[2][2]
