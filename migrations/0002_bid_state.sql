-- The bid function now also returns the auction's state as the decision saw it (after the bid, when
-- accepted), so the cache can be refreshed from what PostgreSQL decided, never from a guess.
-- gavel_instance names this database in shared caches: two databases never share cache keys.

CREATE TABLE gavel_instance (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id        text    NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text)
);
INSERT INTO gavel_instance DEFAULT VALUES;

DROP FUNCTION gavel_place_bid(bigint, bigint, numeric);

-- outcome: 0 accepted, 1 not found, 2 not open, 3 seller's own auction, 4 too low.
CREATE FUNCTION gavel_place_bid(
    p_auction_id bigint,
    p_bidder_id  bigint,
    p_amount     numeric,
    OUT outcome        smallint,
    OUT bid_id         bigint,
    OUT accepted_at    timestamptz,
    OUT not_open_state text,
    OUT current_price  numeric,
    OUT min_next_bid   numeric,
    OUT seller_id      bigint,
    OUT start_price    numeric,
    OUT min_increment  numeric,
    OUT starts_at      timestamptz,
    OUT ends_at        timestamptz,
    OUT bid_count      bigint
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    a auctions%ROWTYPE;
    t timestamptz;
BEGIN
    SELECT * INTO a FROM auctions WHERE id = p_auction_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 1;
        RETURN;
    END IF;
    t := clock_timestamp();
    current_price := a.current_price;
    seller_id     := a.seller_id;
    start_price   := a.start_price;
    min_increment := a.min_increment;
    starts_at     := a.starts_at;
    ends_at       := a.ends_at;
    bid_count     := a.bid_count;
    IF t < a.starts_at THEN
        outcome := 2;
        not_open_state := 'scheduled';
        RETURN;
    END IF;
    IF t >= a.ends_at THEN
        outcome := 2;
        not_open_state := 'closed';
        RETURN;
    END IF;
    IF p_bidder_id = a.seller_id THEN
        outcome := 3;
        RETURN;
    END IF;
    min_next_bid := CASE WHEN a.current_price IS NULL THEN a.start_price
                         ELSE a.current_price + a.min_increment END;
    IF p_amount < min_next_bid THEN
        outcome := 4;
        RETURN;
    END IF;
    IF a.extension_seconds > 0 AND a.ends_at - t < make_interval(secs => a.extension_seconds) THEN
        ends_at := t + make_interval(secs => a.extension_seconds);
    END IF;
    INSERT INTO bids (auction_id, bidder_id, amount, created_at)
    VALUES (p_auction_id, p_bidder_id, p_amount, t)
    RETURNING id INTO bid_id;
    UPDATE auctions
       SET current_price = p_amount,
           leader_id     = p_bidder_id,
           bid_count     = a.bid_count + 1,
           ends_at       = gavel_place_bid.ends_at
     WHERE id = p_auction_id;
    outcome := 0;
    accepted_at := t;
    current_price := p_amount;
    bid_count := a.bid_count + 1;
END
$$;
