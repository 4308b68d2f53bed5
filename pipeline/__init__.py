"""Orchestration of book jobs: the one pipeline spec, the engines that run it, the CLI."""
