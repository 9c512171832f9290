-- Which sale sold a ticket, when the commit named one (checkout names the
-- payment attempt). A booking's hold is sold under one sale id only, so two
-- payment attempts for the same booking can never both sell it.
ALTER TABLE inventory.tickets ADD COLUMN sale_id uuid;
