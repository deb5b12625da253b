"""The pieces of the /v1 gateway that are not views: the OpenAI and Anthropic wire formats on the client's
side, request checks, the rate limiter, the response cache and the OpenAPI description. The views are in
providers/api.py; every call still goes through providers/calls.py."""
