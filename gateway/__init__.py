"""The gateway: how applications call aspweb. The /v1 endpoints (api.py) in the OpenAI and Anthropic wire
formats on the client's side, request checks, the rate limiter, the response cache and the OpenAPI
description; API keys; routes and their routing. It sits above the providers, the ledger and the budgets:
every call still goes through providers/calls.py, to which the gateway lends its routes (apps.py)."""
