"""The provider contract: one suite run over every adapter against recorded wire formats."""
