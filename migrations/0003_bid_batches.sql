-- Decides many bids in one statement and one transaction, so one commit (one WAL flush) makes a
-- whole batch durable. Each bid is decided by gavel_place_bid exactly as before, in the order given
-- for bids on the same auction; auctions are locked in ascending id order, the same order in every
-- batch on every connection, so two batches can wait for each other but never deadlock.
CREATE FUNCTION gavel_place_bids(
    p_auction_ids bigint[],
    p_bidder_ids  bigint[],
    p_amounts     numeric[]
)
RETURNS TABLE (
    ord            integer,
    outcome        smallint,
    bid_id         bigint,
    accepted_at    timestamptz,
    not_open_state text,
    current_price  numeric,
    min_next_bid   numeric,
    seller_id      bigint,
    start_price    numeric,
    min_increment  numeric,
    starts_at      timestamptz,
    ends_at        timestamptz,
    bid_count      bigint
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    i integer;
BEGIN
    IF cardinality(p_auction_ids) <> cardinality(p_bidder_ids)
       OR cardinality(p_auction_ids) <> cardinality(p_amounts) THEN
        RAISE EXCEPTION 'gavel_place_bids: arrays of different lengths';
    END IF;
    FOR i IN
        SELECT s.i FROM generate_subscripts(p_auction_ids, 1) AS s(i)
        ORDER BY p_auction_ids[s.i], s.i
    LOOP
        RETURN QUERY
            SELECT i, b.*
              FROM gavel_place_bid(p_auction_ids[i], p_bidder_ids[i], p_amounts[i]) AS b;
    END LOOP;
END
$$;
