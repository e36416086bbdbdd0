"""The demo (ssl_mix/demo.py): its runs in worker processes give the table of one process, and bad counts fail."""

import pytest

from ssl_mix.cli import main
from ssl_mix.demo import default_workers, format_table, run_demo


def test_the_table_does_not_depend_on_the_number_of_workers(tmp_path):
    tables = [format_table(run_demo((0, 1), steps=2, out_dir=tmp_path / f"w{workers}", device="cpu",
                                    workers=workers)) for workers in (1, 2)]
    assert tables[0] == tables[1]
    assert tables[0].splitlines()[2].startswith("erm") and tables[0].splitlines()[3].startswith("ict")


def test_a_failing_run_in_a_worker_is_raised_naming_the_run(tmp_path):
    with pytest.raises(ValueError, match=r"demo run erm, seed 0: .*use at most num_labels"):
        run_demo((0,), steps=1, num_labels=4000, out_dir=tmp_path, device="cpu", workers=2)


@pytest.mark.parametrize("workers", [0, -1])
def test_workers_must_be_positive(tmp_path, workers):
    with pytest.raises(ValueError, match="workers must be"):
        run_demo((0,), steps=1, out_dir=tmp_path, workers=workers)


@pytest.mark.parametrize("value", ["0", "-2"])
def test_cli_num_workers_must_be_positive(tmp_path, capsys, value):
    assert main(["demo", "--num-workers", value, "--steps", "1", "--out", str(tmp_path)]) == 2
    assert f"--num-workers must be >= 1, got {value}" in capsys.readouterr().err


@pytest.mark.parametrize(("cores", "load", "expected"),
                         [(2, 0.3, 2), (2, 1.5, 1), (2, 4.0, 1), (8, 2.7, 6), (2, None, 2)])
def test_default_workers_are_the_idle_cores(cores, load, expected):
    assert default_workers(cores=cores, load=load) == expected
