-- Live updates (API.md v1.1). Each accepted bid stores the auction's ends_at right after it, so a
-- stream that replays stored bids shows each one's auction as it stood then (a soft-close extension
-- included). Bids stored before this migration have none: a replay shows the auction's current
-- ends_at for them.
--
-- gavel_place_bids also sends one notification per batch on channel gavel_bids, after commit and in
-- commit order, naming the auctions that got accepted bids and their bid counts before and after
-- the batch. Every other rule, and what the function returns, is unchanged from 0005.

ALTER TABLE bids ADD COLUMN ends_at timestamptz;

CREATE OR REPLACE FUNCTION gavel_place_bids(
    p_auction_ids bigint[],
    p_bidder_ids  bigint[],
    p_amounts     numeric[],
    p_callers     bigint[],
    p_keys        text[],
    p_hashes      bytea[]
)
RETURNS TABLE (
    ord            integer,
    replay         smallint,
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
-- Generic plans: a custom plan knows each call's array sizes and so always looks cheaper than the
-- generic one, and PostgreSQL would plan every statement afresh on every call (a third of a small
-- batch's time). A generic plan is kept for the connection's life, so it must not depend on the
-- tables' sizes when it was made (a plan made on a new, empty database would scan whole tables
-- once they have grown). The batch is the small side of every statement here (at most a few
-- hundred rows), so the only right plan is a primary-key probe per batch row: without sequential
-- scans, hash joins and merge joins, that is the only plan left, whatever the sizes.
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
#variable_conflict use_column
DECLARE
    n       integer := cardinality(p_auction_ids);
    keyed   boolean := cardinality(array_remove(p_keys, NULL)) > 0;
    kind    smallint[] := array_fill(0::smallint, ARRAY[n]);
    answers gavel_bid_answer[] := array_fill(NULL::gavel_bid_answer, ARRAY[n]);
    -- The batch's auctions as locked, ascending by id.
    a_id    bigint[];
    a_sel   bigint[];
    a_start numeric[];
    a_inc   numeric[];
    a_opens timestamptz[];
    a_ends  timestamptz[];
    a_ext   integer[];
    a_price numeric[];
    a_lead  bigint[];
    a_count bigint[];
    -- The auction being decided: its index in a_*.
    j       integer := 0;
    t       timestamptz;
    i       integer;
    r       gavel_bid_answer;
    stored  gavel_bid_answer;
    expired_keys boolean := false;
    expired_caller bigint;
    expired_key    text;
    -- What the batch writes.
    new_auction bigint[]      := '{}';
    new_id      bigint[]      := '{}';
    new_bidder  bigint[]      := '{}';
    new_amount  numeric[]     := '{}';
    new_ends    timestamptz[] := '{}';
    -- The batch's notification: for each auction, its bid counts before and after the batch.
    payload     text;
    done_callers bigint[] := '{}';
    done_keys    text[]   := '{}';
    done_hashes  bytea[]  := '{}';
    done_answers gavel_bid_answer[] := '{}';
BEGIN
    IF cardinality(p_bidder_ids) <> n OR cardinality(p_amounts) <> n
       OR cardinality(p_callers) <> n OR cardinality(p_keys) <> n
       OR cardinality(p_hashes) <> n THEN
        RAISE EXCEPTION 'gavel_place_bids: arrays of different lengths';
    END IF;
    IF array_position(p_auction_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'gavel_place_bids: an auction id is NULL';
    END IF;

    -- Sorts every bid by its key, without writing: 0 decide now (also bids without a key), 1 replay
    -- answers[i], 2 key used with another body, 3 same key and body as an earlier bid of this
    -- batch that is decided now: replay its answer once decided. A key past its 24 hours is new,
    -- and its row is deleted before the batch writes the key afresh.
    IF keyed THEN
        SELECT array_agg(x.kind ORDER BY x.o), array_agg(x.answer ORDER BY x.o),
               coalesce(bool_or(x.expired), false)
          INTO kind, answers, expired_keys
          FROM (
            SELECT w.o,
                   (CASE
                        WHEN w.k IS NULL THEN 0
                        WHEN NOT t.expired AND t.request_hash = w.h THEN 1
                        WHEN NOT t.expired THEN 2
                        WHEN w.o = w.first_o THEN 0
                        WHEN w.first_h = w.h THEN 3
                        ELSE 2
                    END)::smallint AS kind,
                   CASE WHEN NOT t.expired AND t.request_hash = w.h THEN t.answer END AS answer,
                   t.expired
              FROM (SELECT u.c, u.k, u.h, u.o,
                           first_value(u.o) OVER same_key AS first_o,
                           first_value(u.h) OVER same_key AS first_h
                      FROM unnest(p_callers, p_keys, p_hashes) WITH ORDINALITY AS u(c, k, h, o)
                    WINDOW same_key AS (PARTITION BY u.c, u.k COLLATE "C" ORDER BY u.o)) AS w
              -- LIMIT keeps this a lookup per bid (a join PostgreSQL cannot turn around).
              -- Keys written before 0005 keep their answer as JSON.
              LEFT JOIN LATERAL (SELECT k.request_hash,
                                        coalesce(k.bid_answer,
                                                 jsonb_populate_record(NULL::gavel_bid_answer,
                                                                       k.answer)) AS answer,
                                        k.created_at <= now() - interval '24 hours' AS expired
                                   FROM idempotency_keys AS k
                                  WHERE k.caller_id = w.c AND k.key = w.k
                                  LIMIT 1) AS t ON true
          ) AS x;
    END IF;

    -- One statement locks every auction a bid decided now names, in ascending id order, the same
    -- order in every batch on every connection, so two batches can wait for each other but never
    -- deadlock.
    SELECT array_agg(l.id), array_agg(l.seller_id), array_agg(l.start_price),
           array_agg(l.min_increment), array_agg(l.starts_at), array_agg(l.ends_at),
           array_agg(l.extension_seconds), array_agg(l.current_price), array_agg(l.leader_id),
           array_agg(l.bid_count)
      INTO a_id, a_sel, a_start, a_inc, a_opens, a_ends, a_ext, a_price, a_lead, a_count
      FROM (SELECT x.id, x.seller_id, x.start_price, x.min_increment, x.starts_at, x.ends_at,
                   x.extension_seconds, x.current_price, x.leader_id, x.bid_count
              FROM auctions AS x
             WHERE x.id = ANY (ARRAY(SELECT p_auction_ids[s.i]
                                       FROM generate_subscripts(p_auction_ids, 1) AS s(i)
                                      WHERE kind[s.i] = 0))
             ORDER BY x.id
               FOR UPDATE) AS l;
    -- The clock of every decision, read once every lock is held.
    t := clock_timestamp();

    -- Bids by auction, in arrival order within each; a_id is walked alongside.
    FOR i IN
        SELECT s.i FROM generate_subscripts(p_auction_ids, 1) AS s(i)
         WHERE kind[s.i] = 0
         ORDER BY p_auction_ids[s.i], s.i
    LOOP
        WHILE j < coalesce(cardinality(a_id), 0) AND (j = 0 OR a_id[j] < p_auction_ids[i]) LOOP
            j := j + 1;
        END LOOP;

        ord := i;
        replay := 0;
        outcome := NULL; bid_id := NULL; accepted_at := NULL; not_open_state := NULL;
        current_price := NULL; min_next_bid := NULL; seller_id := NULL; start_price := NULL;
        min_increment := NULL; starts_at := NULL; ends_at := NULL; bid_count := NULL;

        IF j = 0 OR a_id[j] <> p_auction_ids[i] THEN
            outcome := 1;
        ELSE
            current_price := a_price[j];
            seller_id     := a_sel[j];
            start_price   := a_start[j];
            min_increment := a_inc[j];
            starts_at     := a_opens[j];
            ends_at       := a_ends[j];
            bid_count     := a_count[j];
            IF t < a_opens[j] THEN
                outcome := 2;
                not_open_state := 'scheduled';
            ELSIF t >= a_ends[j] THEN
                outcome := 2;
                not_open_state := 'closed';
            ELSIF p_bidder_ids[i] = a_sel[j] THEN
                outcome := 3;
            ELSE
                min_next_bid := CASE WHEN a_price[j] IS NULL THEN a_start[j]
                                     ELSE a_price[j] + a_inc[j] END;
                IF p_amounts[i] < min_next_bid THEN
                    outcome := 4;
                ELSE
                    IF a_ext[j] > 0 AND a_ends[j] - t < make_interval(secs => a_ext[j]) THEN
                        a_ends[j] := t + make_interval(secs => a_ext[j]);
                    END IF;
                    bid_id := nextval('bids_id_seq'::regclass);
                    -- As stored, so the next bid on this auction sees what the row will hold.
                    a_price[j] := p_amounts[i]::numeric(14,2);
                    a_lead[j]  := p_bidder_ids[i];
                    a_count[j] := a_count[j] + 1;
                    new_auction := new_auction || p_auction_ids[i];
                    new_id      := new_id      || bid_id;
                    new_bidder  := new_bidder  || p_bidder_ids[i];
                    new_amount  := new_amount  || p_amounts[i];
                    new_ends    := new_ends    || a_ends[j];
                    outcome       := 0;
                    accepted_at   := t;
                    current_price := p_amounts[i];
                    ends_at       := a_ends[j];
                    bid_count     := a_count[j];
                END IF;
            END IF;
        END IF;

        IF p_keys[i] IS NOT NULL THEN
            r := ROW(outcome, bid_id, accepted_at, not_open_state, current_price, min_next_bid,
                     seller_id, start_price, min_increment, starts_at, ends_at, bid_count);
            done_callers := done_callers || p_callers[i];
            done_keys    := done_keys    || p_keys[i];
            done_hashes  := done_hashes  || p_hashes[i];
            done_answers := done_answers || r;
        END IF;
        RETURN NEXT;
    END LOOP;

    IF cardinality(new_id) > 0 THEN
        INSERT INTO bids (auction_id, id, bidder_id, amount, created_at, ends_at)
        SELECT u.a, u.i, u.b, u.m, t, u.e
          FROM unnest(new_auction, new_id, new_bidder, new_amount, new_ends) AS u(a, i, b, m, e);
        -- The auctions a bid was accepted on, with their state after the batch's last bid.
        UPDATE auctions AS x
           SET current_price = a_price[g.sub], leader_id = a_lead[g.sub],
               bid_count = a_count[g.sub], ends_at = a_ends[g.sub]
          FROM generate_subscripts(a_id, 1) AS g(sub)
         WHERE x.id = a_id[g.sub]
           -- Also an index condition on auctions itself, so no plan can walk the whole table.
           AND x.id = ANY (new_auction);
        -- One notification for the batch, sent by PostgreSQL when (and only if) it commits:
        -- "auction:before:after" for each auction a bid was accepted on, comma-separated.
        SELECT string_agg(u.a || ':' || (a_count[array_position(a_id, u.a)] - u.n) || ':'
                          || a_count[array_position(a_id, u.a)], ',')
          INTO payload
          FROM (SELECT x.a, count(*) AS n FROM unnest(new_auction) AS x(a) GROUP BY x.a) AS u;
        -- A payload must stay under 8000 bytes; past that, "*" asks listeners to resynchronise
        -- every auction they follow from the stored bids.
        IF length(payload) > 7900 THEN
            payload := '*';
        END IF;
        PERFORM pg_notify('gavel_bids', payload);
    END IF;

    IF NOT keyed THEN
        RETURN;
    END IF;
    -- The keys decided now, with their answers, in (caller_id, key) order, after the keys past
    -- their 24 hours that the batch takes over are deleted. A key another transaction wrote
    -- meanwhile (new, or taken over) fails the whole batch with a unique violation of
    -- idempotency_keys_pkey, after waiting for that transaction to end.
    IF cardinality(done_keys) > 0 THEN
        -- One key at a time, in (caller_id, key) order like every other key write: two batches
        -- taking over the same keys lock them in the same order. Rare: only batches that meet a
        -- key past its 24 hours come here.
        IF expired_keys THEN
            FOR expired_caller, expired_key IN
                SELECT d.c, d.k FROM unnest(done_callers, done_keys) AS d(c, k)
                 ORDER BY d.c, d.k COLLATE "C"
            LOOP
                DELETE FROM idempotency_keys AS k
                 WHERE k.caller_id = expired_caller AND k.key = expired_key
                   AND k.created_at <= now() - interval '24 hours';
            END LOOP;
        END IF;
        -- By subscript: unnest would spread the answers' fields into columns of their own.
        INSERT INTO idempotency_keys (caller_id, key, request_hash, bid_answer)
        SELECT done_callers[g.sub], done_keys[g.sub], done_hashes[g.sub], done_answers[g.sub]
          FROM generate_subscripts(done_keys, 1) AS g(sub)
         ORDER BY done_callers[g.sub], done_keys[g.sub] COLLATE "C";
    END IF;

    -- Replays, reused keys, and repeats within this batch of a key decided now.
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN kind[i] = 0;
        IF kind[i] = 3 THEN
            SELECT (done_answers[g.sub]).* INTO stored
              FROM generate_subscripts(done_keys, 1) AS g(sub)
             WHERE done_callers[g.sub] = p_callers[i] AND done_keys[g.sub] = p_keys[i];
            answers[i] := stored;
            kind[i] := 1;
        END IF;
        ord := i;
        IF kind[i] = 1 THEN
            IF (answers[i]).outcome IS NULL THEN
                RAISE EXCEPTION 'gavel_place_bids: a key without its answer';
            END IF;
            r := answers[i];
            replay := 1;
        ELSE
            r := NULL;
            replay := 2;
        END IF;
        outcome := r.outcome; bid_id := r.bid_id; accepted_at := r.accepted_at;
        not_open_state := r.not_open_state; current_price := r.current_price;
        min_next_bid := r.min_next_bid; seller_id := r.seller_id; start_price := r.start_price;
        min_increment := r.min_increment; starts_at := r.starts_at; ends_at := r.ends_at;
        bid_count := r.bid_count;
        RETURN NEXT;
    END LOOP;
END
$$;
