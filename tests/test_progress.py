"""Progress off a terminal (a log file, a pipe): plain lines, throttled, the last always;
messages and tables there are not wrapped at 80 columns."""
from rich.table import Table

from jepalab.progress import OFF_TERMINAL_WIDTH, Bar, console


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


def test_off_a_terminal_paths_stay_on_one_line_and_table_cells_unfolded(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    path = "runs/quickstart/" + "a-rather-long-folder-name/" * 5 + "episodes.gif"
    table = Table()
    for name in ("method", "linear", "attentive", "notes"):
        table.add_column(name)
    table.add_row("ijepa per frame (every frame's tokens)", "13.5 ± 0.4", "15.8 ± 0.9",
                  "the same I-JEPA encoder on every frame, tokens of all frames together")
    out = console()
    out.print(f"[bold]4/4[/bold] episodes: {path}")
    out.print(table)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"4/4 episodes: {path}"                  # no markup, no line break
    assert any("the same I-JEPA encoder on every frame, tokens of all frames together" in line
               and "13.5 ± 0.4" in line for line in printed)   # one row, one line
    assert max(map(len, printed[1:])) <= OFF_TERMINAL_WIDTH


def test_columns_still_decides_the_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert console().width == 100
