"""The user documentation and its API reference (generated from the docstrings) build without a warning."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_documentation_builds_strictly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                             "-d", str(tmp_path / "site")], capture_output=True, text=True,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    api = tmp_path / "site" / "api"
    assert "from_smiles" in (api / "systems" / "index.html").read_text()
    assert "OpenMMTarget" in (api / "targets" / "index.html").read_text()
    assert "MetropolisHastings" in (api / "samplers" / "index.html").read_text()


def test_readme_links_to_pages_that_exist():
    import re

    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?:docs|models|benchmarks)/[^)#]+)", readme)
    assert links, "the README links to its docs pages"
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_the_sampling_core_example_runs_and_samples_both_wells(capsys):
    """The example of docs/sampling-core.md, executed as written: MH finds both wells, SMC keeps most particles."""
    import re

    text = (ROOT / "docs" / "sampling-core.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    namespace: dict = {}
    exec(compile(code, "docs/sampling-core.md", "exec"), namespace)
    assert 0.9 < float(namespace["state"].x.abs().mean()) < 1.1  # the wells are at +-1
    assert namespace["samples"].ess() > 500 and namespace["samples"].info["history"][-1]["beta"] == 1.0
