"""Progress: plain lines off a terminal, numbered and timed stages."""

from slimkit.progress import Stages, is_terminal, track


def test_track_prints_plain_lines_off_a_terminal():
    lines = []
    assert not is_terminal()  # pytest captures stderr: not a terminal
    assert list(track(range(3), "calibration", every_s=0.0, log=lines.append)) == [0, 1, 2]
    assert lines[:3] == ["calibration: 1/3 (33%), 0 s", "calibration: 2/3 (67%), 0 s",
                         "calibration: 3/3 (100%), 0 s"]
    assert lines[-1].startswith("calibration: 3 done in ")


def test_track_disabled_is_silent_and_stages_count():
    lines = []
    assert list(track(iter("ab"), "x", enabled=False, log=lines.append)) == ["a", "b"]
    stages = Stages(2, log=lines.append)
    with stages("search"):
        pass
    assert lines[0] == "[1/2] search ..." and lines[1].startswith("[1/2] search: done in ")
    assert set(stages.seconds) == {"search"}
