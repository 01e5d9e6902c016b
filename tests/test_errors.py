"""One error base class, one command-line handler."""

import importlib
import inspect
import pkgutil

import pytest

import gptjax
from gptjax.errors import GptjaxError, report_errors


def test_every_gptjax_error_class_derives_from_the_base():
    errors = []
    for info in pkgutil.walk_packages(gptjax.__path__, "gptjax."):
        if info.name.endswith("__main__") or info.name == "gptjax.lm_eval_adapter":
            continue  # runs a command line on import; needs the optional lm-eval
        module = importlib.import_module(info.name)
        errors += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                   if issubclass(cls, Exception) and cls.__module__ == info.name]
    assert {cls.__name__ for cls in errors} >= {"ConfigError", "DataError", "TokenizerError", "CheckpointError",
                                                "TrainingError", "HFError", "TaskError", "PlotError", "RunError",
                                                "RunDirError", "UnwritableError", "RunInUseError",
                                                "PrivateAddressError"}
    assert [cls for cls in errors if not issubclass(cls, GptjaxError)] == []


def test_report_errors_prints_one_line_and_returns_the_errors_exit_code(capsys):
    from gptjax.config import ConfigError
    from gptjax.trainer import TrainingError

    def bad_config():
        raise ConfigError("model.d_model=7 is odd; use an even width")

    assert report_errors(bad_config) == 2
    assert capsys.readouterr().err == "error: model.d_model=7 is odd; use an even width\n"

    def diverged():
        raise TrainingError("loss became nan at step 3")

    assert report_errors(diverged) == 1
    assert report_errors(lambda: None) == 0 and report_errors(lambda: 3) == 3


def test_other_exceptions_are_bugs_and_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        report_errors(lambda: 1 / 0)
