"""Progress off a terminal (a log file, a pipe): plain lines, throttled, the last always."""
from jepalab.progress import Bar


def lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()  # nothing else: no bar drawn as it closes


def test_off_a_terminal_every_update_is_a_line_when_unthrottled(capsys):
    with Bar("job", 3, enabled=True, every=0) as bar:
        for done in (1, 2, 3):
            bar.update(done, f"{done} reached")
    assert lines(capsys) == ["job: 1/3 1 reached", "job: 2/3 2 reached", "job: 3/3 3 reached"]


def test_throttled_lines_keep_the_first_and_the_last(capsys):
    with Bar("job", 100, enabled=True, completed=10, every=3600) as bar:
        for _ in range(90):
            bar.update()                              # one more each
    assert lines(capsys) == ["job: 11/100", "job: 100/100"]


def test_disabled_prints_nothing(capsys):
    with Bar("job", 2, enabled=False, every=0) as bar:
        bar.update(1, "x")
        bar.update(2, "y")
    assert capsys.readouterr().out == ""
