"""What the ledger tells the apps built on it, without knowing them.

`records_written` is sent by usage.services inside the transaction that writes a batch of usage records,
after their rollup rows: receivers (budgets, connected in its AppConfig.ready) change their own rows in the
same transaction. Sent with `send`, not `send_robust`: a receiver's failure rolls the batch back, so that the
ledger and what is kept beside it never disagree.

    records_written.send(sender=UsageRecord, records=[...])  # saved, priced records
"""

from django.dispatch import Signal

records_written = Signal()
