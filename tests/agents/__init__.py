"""The real coding agents chatd's users run (Claude Code, Codex CLI, opencode), pinned, installed and run offline.

`install.py` installs them from npm into a cache keyed by package-lock.json;
`run.py` runs each once against a loopback base URL in an isolated home;
`fake_api.py` is a logging fake of the Anthropic and Responses APIs for proving
the harness itself. README.md says what each agent sends and needs.
"""
