"""SIGINT/SIGTERM handling of the sweep command outside Tune's loop (the real mid-sweep SIGINT is
test_interrupt_ray.py): exit codes, the resume command, handlers restored, rows marked."""

import os
import signal

import pytest

from prune_ray.tune.interrupt import Interrupts, SweepInterrupted, resume_command


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_outside_tunes_loop_stops_the_sweep_with_128_plus_its_number(signum, code, capsys):
    interrupts, before = Interrupts(), signal.getsignal(signum)
    with pytest.raises(SweepInterrupted) as stopped:
        with interrupts.installed():
            assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"  # Tune's own SIGINT handler stays out
            os.kill(os.getpid(), signum)
    assert stopped.value.exit_code == code and interrupts.signum == signum
    assert signal.getsignal(signum) is before and "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ
    assert "press Ctrl-C again to stop at once" in capsys.readouterr().err


def test_the_resume_command_is_quoted_for_a_shell():
    assert resume_command("s", "/r/my results", None) == "python -m prune_ray.sweep --resume --name s --storage '/r/my results'"
    assert resume_command("s", "s3://b/p", "auto").endswith("--storage s3://b/p --address auto")
