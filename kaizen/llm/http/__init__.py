"""The fast path for OpenAI-compatible servers: what is left of Kaizen's own HTTP transport.

- `session`: one aiohttp `ClientSession` per event loop (pooled keep-alive connections, a bounded
  connector, proxies from the environment, certificates verified as the standard library does).
- `openai_compat`: the chat-completions transport on it (request, reply, streamed events, errors
  for the retry rules), written once and driven from sync and async code alike.
"""
