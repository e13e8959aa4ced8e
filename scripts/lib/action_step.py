"""Run action.yml's steps as a GitHub runner would, for scripts/test-action.sh.

    python3 action_step.py ACTION_YML [INPUT=VALUE...]

Each `run:` step of the composite action is run with bash, its `env:` evaluated from the
inputs (action.yml's defaults, overridden by the arguments) and the `github.action_*`
context (from GITHUB_ACTION_REPOSITORY and GITHUB_ACTION_PATH); the rest of the runner's
environment (RUNNER_*, GITHUB_*) is inherited. Exits with the first failing step's code.
"""

import os
import re
import subprocess
import sys

import yaml

EXPR = re.compile(r"\$\{\{\s*([a-z_.-]+)\s*\}\}")


def main() -> int:
    with open(sys.argv[1]) as f:
        action = yaml.safe_load(f)
    inputs = {k: str(v.get("default", "")) for k, v in action.get("inputs", {}).items()}
    for arg in sys.argv[2:]:
        key, _, value = arg.partition("=")
        if key not in inputs:
            sys.exit(f"action_step.py: action.yml has no input {key!r}")
        inputs[key] = value
    context = {f"inputs.{k}": v for k, v in inputs.items()}
    context["github.action_repository"] = os.environ.get("GITHUB_ACTION_REPOSITORY", "")
    context["github.action_path"] = os.environ["GITHUB_ACTION_PATH"]

    def evaluate(text: str) -> str:
        def one(m: re.Match) -> str:
            if m.group(1) not in context:
                sys.exit(f"action_step.py: unknown expression {m.group(0)}")
            return context[m.group(1)]

        return EXPR.sub(one, str(text))

    runs = action["runs"]
    if runs.get("using") != "composite":
        sys.exit("action_step.py: not a composite action")
    for step in runs["steps"]:
        if "run" not in step:
            sys.exit(f"action_step.py: step {step.get('id')} is not a run step")
        if step.get("shell") != "bash":
            sys.exit(f"action_step.py: step {step.get('id')} does not use bash")
        env = dict(os.environ)
        env.update({k: evaluate(v) for k, v in step.get("env", {}).items()})
        # What the runner runs for `shell: bash`.
        cmd = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", evaluate(step["run"])]
        rc = subprocess.run(cmd, env=env).returncode
        if rc != 0:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
