"""Settings: the environment, then explicit overrides, both validated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lookalike
from lookalike.errors import BadArgument
from lookalike.settings import clear_settings_cache, get_settings


def test_overrides_are_validated_like_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_ANN_NPROBE", "7")
    clear_settings_cache()
    try:
        s = get_settings(data_dir="/tmp/x", ann_threshold="100")
        # Converted as the environment's strings are, and the environment still applies.
        assert s.data_dir == Path("/tmp/x")
        assert s.ann_threshold == 100
        assert s.ann_nprobe == 7
    finally:
        clear_settings_cache()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ann_treshold": 3}, "unknown setting(s): ann_treshold"),
        ({"ann_threshold": "many"}, "invalid setting(s): ann_threshold"),
    ],
)
def test_a_wrong_override_is_a_clear_error(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(BadArgument, match=re.escape(message)):
        lookalike.open(tmp_path / "data", **overrides)
    assert not (tmp_path / "data").exists()
