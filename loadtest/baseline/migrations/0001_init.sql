-- Idempotent so that start-up can run it on every launch.

CREATE TABLE IF NOT EXISTS auctions (
    id                BIGSERIAL PRIMARY KEY,
    title             TEXT          NOT NULL,
    seller_id         BIGINT        NOT NULL CHECK (seller_id > 0),
    start_price       NUMERIC(14,2) NOT NULL CHECK (start_price > 0),
    min_increment     NUMERIC(14,2) NOT NULL CHECK (min_increment > 0),
    starts_at         TIMESTAMPTZ   NOT NULL,
    ends_at           TIMESTAMPTZ   NOT NULL CHECK (ends_at > starts_at),
    extension_seconds INTEGER       NOT NULL DEFAULT 0 CHECK (extension_seconds BETWEEN 0 AND 3600),
    current_price     NUMERIC(14,2),
    leader_id         BIGINT,
    bid_count         BIGINT        NOT NULL DEFAULT 0,
    created_at        TIMESTAMPTZ   NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS bids (
    id         BIGSERIAL PRIMARY KEY,
    auction_id BIGINT        NOT NULL REFERENCES auctions (id),
    bidder_id  BIGINT        NOT NULL CHECK (bidder_id > 0),
    amount     NUMERIC(14,2) NOT NULL CHECK (amount > 0),
    created_at TIMESTAMPTZ   NOT NULL
);

-- Bid history pages walk one auction's bids newest first.
CREATE INDEX IF NOT EXISTS bids_auction_id_id_idx ON bids (auction_id, id DESC);
