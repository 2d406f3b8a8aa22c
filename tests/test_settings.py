"""Every CLI flag has a PYTHIA_* environment twin; flags win over the environment."""

import pytest

from model_utils.settings import Settings, parse_settings

FLAG_ENV = [
    (["--host", "0.0.0.0"], {"PYTHIA_HOST": "0.0.0.0"}, "host", "0.0.0.0"),
    (["--port", "8000"], {"PYTHIA_PORT": "8000"}, "port", 8000),
    (["--device", "cpu"], {"PYTHIA_DEVICE": "cpu"}, "device", "cpu"),
    (["--compute-type", "float32"], {"PYTHIA_COMPUTE_TYPE": "float32"}, "compute_type", "float32"),
    (["--cache-dir", "/tmp/x"], {"PYTHIA_CACHE_DIR": "/tmp/x"}, "cache_dir", "/tmp/x"),
    (["--memory-budget", "3.5"], {"PYTHIA_MEMORY_BUDGET": "3.5"}, "memory_budget", 3.5),
    (["--default-model", "pythia-70m"], {"PYTHIA_DEFAULT_MODEL": "pythia-70m"}, "default_model", "pythia-70m"),
    (["--model-dir", "/m"], {"PYTHIA_MODEL_DIR": "/m"}, "model_dir", "/m"),
    (["--demo"], {"PYTHIA_DEMO": "1"}, "demo", True),
    (["--mcp"], {"PYTHIA_MCP": "true"}, "mcp", True),
]


MORE_FLAGS = [
    (["--threads", "2"], {"PYTHIA_THREADS": "2"}, "threads", 2),
    (["--max-batch-size", "1"], {"PYTHIA_MAX_BATCH_SIZE": "1"}, "max_batch_size", 1),
    (["--batch-window-ms", "25"], {"PYTHIA_BATCH_WINDOW_MS": "25"}, "batch_window_ms", 25.0),
    (["--workers", "2"], {"PYTHIA_WORKERS": "2"}, "workers", 2),
    (["--max-queue", "5"], {"PYTHIA_MAX_QUEUE": "5"}, "max_queue", 5),
]
LATER_FLAGS = [
    (["--log-level", "debug"], {"PYTHIA_LOG_LEVEL": "DEBUG"}, "log_level", "debug"),
    (["--disk-budget", "20"], {"PYTHIA_DISK_BUDGET": "20"}, "disk_budget", 20.0),
    (["--hub-timeout", "3"], {"PYTHIA_HUB_TIMEOUT": "3"}, "hub_timeout", 3.0),
    (["--max-client-rows", "3"], {"PYTHIA_MAX_CLIENT_ROWS": "3"}, "max_client_rows", 3),
    (["--api-key", "k1"], {"PYTHIA_API_KEY": "k1"}, "api_key", "k1"),
    (["--max-api-rows", "12"], {"PYTHIA_MAX_API_ROWS": "12"}, "max_api_rows", 12),
    (["--max-api-rows", "0"], {"PYTHIA_MAX_API_ROWS": "0"}, "max_api_rows", 0),
    (["--max-body-mb", "0.5"], {"PYTHIA_MAX_BODY_MB": "0.5"}, "max_body_mb", 0.5),
]


@pytest.mark.parametrize("flags,env,field,value", FLAG_ENV, ids=[row[2] for row in FLAG_ENV])
def test_flag_and_env_twin(flags, env, field, value):
    assert getattr(parse_settings(flags, environ={}), field) == value
    assert getattr(parse_settings([], environ=env), field) == value


def test_defaults():
    s = parse_settings([], environ={})
    assert s == Settings()
    assert (s.host, s.port, s.device, s.compute_type, s.default_model) == (
        "127.0.0.1", 7860, "auto", "default", "pythia-160m")


def test_flag_beats_environment():
    assert parse_settings(["--port", "9000"], environ={"PYTHIA_PORT": "8000"}).port == 9000


def test_spaces_listen_address():
    s = parse_settings([], environ={"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"})
    assert (s.host, s.port) == ("0.0.0.0", 7861)


@pytest.mark.parametrize("flags", [["--device", "tpu"], ["--memory-budget", "-1"], ["--port", "x"],
                                   ["--compute-type", "int4"]])
def test_bad_flags_exit_with_usage(flags, capsys):
    with pytest.raises(SystemExit) as info:
        parse_settings(flags, environ={})
    assert info.value.code == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.parametrize("flags,env,field,value", MORE_FLAGS, ids=[row[2] for row in MORE_FLAGS])
def test_batching_flags(flags, env, field, value):
    assert getattr(parse_settings(flags, environ={}), field) == value
    assert getattr(parse_settings([], environ=env), field) == value


@pytest.mark.parametrize("flags,env,field,value", LATER_FLAGS, ids=[row[2] for row in LATER_FLAGS])
def test_more_flags_and_their_twins(flags, env, field, value):
    assert getattr(parse_settings(flags, environ={}), field) == value
    assert getattr(parse_settings([], environ=env), field) == value


def test_the_api_key_is_never_shown_by_help(capsys):
    with pytest.raises(SystemExit):
        parse_settings(["--help"], environ={"PYTHIA_API_KEY": "sekrit-value"})
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "sekrit-value" not in shown and "--api-key KEY" in shown and "set in the environment" in shown


@pytest.mark.parametrize("flags, env", [(["--port", "99999"], {}), (["--port", "0"], {}),
                                        ([], {"PYTHIA_PORT": "70000"})])
def test_a_port_out_of_range_is_one_readable_error(flags, env, capsys):
    with pytest.raises(SystemExit) as info:
        parse_settings(flags, environ=env)
    assert info.value.code == 2
    assert "is not a port number from 1 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize("env, words", [
    ({"PYTHIA_MAX_QUEUE": "abc"}, "environment variable PYTHIA_MAX_QUEUE: 'abc' is not a whole number"),
    ({"PYTHIA_MAX_QUEUE": "0"}, "environment variable PYTHIA_MAX_QUEUE: '0' is not a positive whole number"),
    ({"PYTHIA_WAIT_STEPS": "soon"}, "environment variable PYTHIA_WAIT_STEPS: 'soon' is not a number"),
    ({"PYTHIA_DEVICE": "tpu"}, "environment variable PYTHIA_DEVICE: 'tpu' is not one of auto, cpu, cuda"),
    ({"GRADIO_SERVER_PORT": "x"}, "environment variable GRADIO_SERVER_PORT: 'x' is not a port number"),
    ({"PYTHIA_REMOTE_MODELS": "nope"}, "environment variable PYTHIA_REMOTE_MODELS: 'nope' is not NAME"),
])
def test_an_invalid_environment_variable_is_named_with_what_is_wrong(env, words, capsys):
    with pytest.raises(SystemExit) as info:
        parse_settings([], environ=env)
    assert info.value.code == 2
    error = " ".join(capsys.readouterr().err.split())
    assert words in error and "invalid" not in error and "_int" not in error


def test_an_invalid_flag_says_what_is_wrong_in_words(capsys):
    with pytest.raises(SystemExit):
        parse_settings(["--max-queue", "abc"], environ={})
    assert "argument --max-queue: 'abc' is not a whole number" in capsys.readouterr().err


def option_help(name: str) -> str:
    """The --help paragraph of one flag, on one line."""
    from model_utils.settings import build_parser

    text = " ".join(build_parser({}).format_help().split())
    start = text.index(f" --{name} ") if f" --{name} " in text else text.index(f" --{name}")
    following = text.find(" --", start + 3)
    return text[start:following if following > 0 else None].strip()


@pytest.mark.parametrize("name, default", [
    ("host", "127.0.0.1"), ("port", "7860"), ("default-model", "pythia-160m"), ("max-batch-size", "16"),
    ("batch-window-ms", "50.0"), ("wait-steps", "4.0"), ("max-queue", "64"), ("hub-timeout", "10.0"),
    ("remote-timeout", "30.0"), ("cache-dir", "$HF_HOME/pythia-ct2"), ("memory-budget", "85% of what is free"),
    ("threads", "usable cores / workers"), ("workers", "2 on a multi-core CPU"), ("log-level", "info"),
    ("disk-budget", "no limit"), ("demo", "off"), ("remote-model", "none")])
def test_help_shows_every_default(name, default):
    assert f"default: {default}" in option_help(name)


def test_help_names_what_each_flag_takes():
    assert option_help("remote-model").startswith("--remote-model NAME[@REVISION]=URL")
    assert option_help("port").startswith("--port PORT")
    assert option_help("cache-dir").startswith("--cache-dir DIR")
    assert "model " in option_help("demo") and "models" not in option_help("demo"), "--demo serves one model"
