"""Stateless building blocks used beside the stateful layers."""

__all__: list[str] = []
