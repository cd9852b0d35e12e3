"""One sync pass: list, fetch, plan, apply, finish. The engine knows no feature."""
