"""The request ledger: the batched, durable writer and the queries the admin API runs."""

from gateway.ledger.queries import key_spend, ledger_page, spend
from gateway.ledger.writer import LedgerWriter, to_row

__all__ = ["LedgerWriter", "key_spend", "ledger_page", "spend", "to_row"]
