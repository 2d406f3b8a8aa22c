"""The README's gradio_client examples run as written against the live app (--demo)."""

import json
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a live server, a browser or a subprocess

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_api_examples_run(demo_url, capsys):
    """Every gradio_client example, as written, against `python app.py --demo` (offline; conftest's demo_url)."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "gradio_client" in b]
    assert len(blocks) >= 2
    for example in blocks:
        # Only the address differs from what a reader runs.
        exec(compile(example.replace("http://127.0.0.1:7860/", demo_url), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "demo-pythia-kjv" in printed  # /models listed the offline demo model
    assert "step256 256 ok" in printed and "main 3000 ok" in printed  # the offline learning curve ran


def test_readme_openai_examples_run(demo_url, capsys):
    """The OpenAI section's curl command and openai-client example, as written, against `python app.py --demo`."""
    text = README.read_text()
    section = text[text.index("## OpenAI-compatible API"):]
    python = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "from openai import" in b]
    curl = [b for b in re.findall(r"```bash\n(.*?)```", section, re.S) if b.startswith("curl ")]
    assert len(python) == 1 and len(curl) == 1
    exec(compile(python[0].replace("http://127.0.0.1:7860", demo_url), "README.md", "exec"), {})
    done = subprocess.run(["bash", "-c", curl[0].replace("http://127.0.0.1:7860", demo_url)], capture_output=True,
                          text=True, timeout=60, check=True)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].strip() and printed[1].startswith("[None, -")  # a reply, then the scored prompt
    assert json.loads(done.stdout)["model"] == "demo-pythia-kjv@step1000"


def test_readme_states_both_commands():
    text = README.read_text()
    assert "pip install -r requirements.txt && python app.py" in text
    assert "bash tests/run.sh" in text
    assert "sdk_version: 6.31.0" in text
