"""What leadflow keeps in its own database about the leads it handles.

- `inbox`: leads accepted in real time (the webhook receiver, a polled source),
  written before the receiver answers 202 or the source's watermark moves, kept
  until the pipeline has finished them;
- `decisions`: what was decided for each version of a lead, with the CRM match it
  was decided from, and when its side effects were all done; a rerun answers a done
  lead from here and resends a decided one's side effects with the same decision.

The once-only record of each side effect is `leadflow.once`.
"""
