"""The web dashboard: server-rendered Starlette views over a Backend."""
