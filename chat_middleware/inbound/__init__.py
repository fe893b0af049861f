"""Other APIs that clients speak to chatd, translated to and from its OpenAI form.

`ollama_api` serves Ollama's native API (/api/chat, /api/generate, /api/tags,
/api/version) under /v1/chat: `ollama_request` turns its requests into OpenAI
bodies, `ollama_render` turns OpenAI answers into its replies.
"""
