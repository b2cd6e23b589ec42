"""The search: space, objective, cost objectives, cross-validation, budget, leaderboard, prechecks."""
