"""Weight import from other frameworks' formats."""
