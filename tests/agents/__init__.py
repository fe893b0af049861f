"""The real coding agents chatd's users run (Claude Code, Codex CLI, opencode), pinned, installed and run offline.

`install.py` installs them from npm into a cache keyed by package-lock.json;
`run.py` runs each once against a loopback base URL in an isolated home;
`scenarios.py` holds the checks every agent must pass through chatd.
README.md says what each agent sends and needs.
"""
