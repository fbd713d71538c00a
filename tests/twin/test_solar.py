"""Fleet-wide sun position and clear sky agree with pvlib's per-site functions."""

import numpy as np
import pandas as pd
import pvlib

from twin.solar import clear_sky, sun_position


def test_sun_position_matches_pvlib_spa():
    times = pd.date_range("2026-03-20", periods=4 * 24 * 3, freq="15min", tz="UTC")
    unix = (times - pd.Timestamp(0, tz="UTC")).total_seconds().to_numpy()
    lat, lon = np.array([48.14, 37.39, 52.09]), np.array([11.58, -5.98, 5.12])
    zen, az = sun_position(lat, lon, unix)
    assert zen.shape == (len(times), 3)
    for i in range(3):
        ref = pvlib.solarposition.get_solarposition(times, lat[i], lon[i])
        up = ref["zenith"].to_numpy() < 85
        assert np.abs(zen[up, i] - ref["zenith"].to_numpy()[up]).max() < 0.6
        assert np.abs(az[up, i] - ref["azimuth"].to_numpy()[up]).max() < 1.5


def test_clear_sky_is_zero_at_night_and_plausible_at_noon():
    unix = np.array([0.0, 12 * 3600.0]) + 1_781_913_600.0  # 2026-06-20 00:00 and 12:00 UTC
    zen, _ = sun_position(np.array([45.0]), np.array([0.0]), unix)
    ghi, dni, dhi = clear_sky(zen, unix)
    assert ghi[0, 0] == 0.0 and dni[0, 0] == 0.0
    assert 850 < ghi[1, 0] < 1100 and 750 < dni[1, 0] < 1000 and 50 < dhi[1, 0] < 200
