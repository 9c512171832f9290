-- Provider webhooks become an append-only log. What the provider last said
-- about a payment is its highest-ranked recorded event (a late or duplicate
-- delivery ranks no higher, so it changes nothing), read through a view.
-- Recording a delivery no longer updates the payment's row, so it never
-- waits for, or deadlocks with, a confirmation finishing that payment.

ALTER TABLE checkout.webhook_events ADD COLUMN rank smallint NOT NULL DEFAULT 0;
UPDATE checkout.webhook_events
SET rank = CASE status WHEN 'authorized' THEN 1 WHEN 'refunded' THEN 3 ELSE 2 END;
CREATE INDEX webhook_events_by_payment ON checkout.webhook_events (payment_id, rank DESC, received_at)
    WHERE payment_id IS NOT NULL;

CREATE VIEW checkout.payment_provider_states AS
SELECT DISTINCT ON (payment_id) payment_id, status AS provider_state, rank, received_at
FROM checkout.webhook_events
WHERE payment_id IS NOT NULL
ORDER BY payment_id, rank DESC, received_at, event_id;

ALTER TABLE checkout.payments DROP COLUMN provider_state, DROP COLUMN provider_rank;
