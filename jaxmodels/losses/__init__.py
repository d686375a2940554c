"""Loss functions shared by families."""
