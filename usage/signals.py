"""What the ledger tells the apps built on it, without knowing them.

`records_written` is sent by usage.services inside the transaction that writes a batch of usage records,
after their rollup rows: receivers (budgets, connected in its AppConfig.ready) change their own rows in the
same transaction. Sent with `send`, not `send_robust`: a receiver's failure rolls the batch back, so that the
ledger and what is kept beside it never disagree.

    records_written.send(sender=UsageRecord, records=[...])  # saved, priced records

`records_priced` is sent just before that transaction begins, with the batch's records priced and not yet
saved, for what must not happen while the transaction holds its row locks (budgets settle the holds they
keep in Redis). A receiver's failure stops the batch before anything is written.
"""

from django.dispatch import Signal

records_priced = Signal()
records_written = Signal()
