"""The one generic trainer used by every task."""
