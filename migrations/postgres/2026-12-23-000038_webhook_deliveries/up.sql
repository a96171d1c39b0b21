-- Webhook deliveries taken (src/adapters/vendor/webhook.rs): each one's signature, written in
-- the transaction that applies it and kept for twice the source's tolerance, so that the same
-- delivery sent again (to this process or to another on a shared database) is refused, while
-- one whose application failed is not: the vendor's retry of it goes in.
CREATE TABLE webhook_deliveries (
    source TEXT NOT NULL,
    signature TEXT NOT NULL,
    taken_at BIGINT NOT NULL,
    PRIMARY KEY (source, signature)
);
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (source, taken_at);
