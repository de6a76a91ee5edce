-- Idempotent retries. A key is claimed, its request decided and its answer stored in one transaction,
-- so a crash can never separate an effect from its key. Two requests with the same key meet at the
-- primary key: the second claim waits until the first transaction ends, then finds its answer.
--
-- Lock order, the same in every transaction: keys first, in (caller_id, key) order, then auction
-- rows in ascending id order. A transaction waiting for a key holds no auction lock, and one that
-- holds auction locks waits only for auctions, so no two transactions can wait for each other.

CREATE TABLE idempotency_keys (
    caller_id    bigint      NOT NULL,
    key          text        NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 255),
    request_hash bytea       NOT NULL,
    -- The decision as the database made it; NULL only inside the claiming transaction.
    answer       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller_id, key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- One bid's decision, as gavel_place_bid returns it; stored answers are rows of this type.
CREATE TYPE gavel_bid_answer AS (
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
);

-- What an auction creation under a key returns: replay as for bids, answered_at the clock the
-- first answer derived the auction's status from, then the auction as auction_select! reads it.
CREATE TYPE gavel_auction_answer AS (
    replay              smallint,
    answered_at         timestamptz,
    a_id                bigint,
    a_title             text,
    a_seller_id         bigint,
    a_start_price       numeric,
    a_min_increment     numeric,
    a_starts_at         timestamptz,
    a_ends_at           timestamptz,
    a_extension_seconds integer,
    a_current_price     numeric,
    a_leader_id         bigint,
    a_bid_count         bigint,
    a_created_at        timestamptz
);

-- Claims a key for this transaction. claimed: the key is new, or its 24 hours are over and it starts
-- afresh. Otherwise same_request tells whether the stored request matches, and answer is its stored
-- answer (NULL when this same transaction claimed the key earlier and has not answered yet).
CREATE FUNCTION gavel_claim_key(
    p_caller bigint,
    p_key    text,
    p_hash   bytea,
    OUT claimed      boolean,
    OUT same_request boolean,
    OUT answer       jsonb
)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO idempotency_keys AS k (caller_id, key, request_hash)
    VALUES (p_caller, p_key, p_hash)
    ON CONFLICT (caller_id, key) DO UPDATE
        SET request_hash = EXCLUDED.request_hash, answer = NULL, created_at = now()
        WHERE k.created_at <= now() - interval '24 hours';
    claimed := FOUND;
    IF claimed THEN
        same_request := true;
        RETURN;
    END IF;
    SELECT k.request_hash = p_hash, k.answer
      INTO same_request, answer
      FROM idempotency_keys k
     WHERE k.caller_id = p_caller AND k.key = p_key;
END
$$;

-- The key statements of a batch, planned afresh at each call (force_custom_plan): they join the
-- batch's arrays with idempotency_keys, and a plan cached while the table was small (a sequential
-- scan) would otherwise be kept on a connection long after the table has grown.
--
-- Claims each distinct key of the batch once, for its first bid, in (caller_id, key) order, then
-- sorts every bid: 0 decide now, 1 replay answers[i], 2 key reused with another body, 3 same key
-- and body as an earlier bid of the batch (0 too for bids without a key).
CREATE FUNCTION gavel_sort_keys(
    p_callers bigint[],
    p_keys    text[],
    p_hashes  bytea[],
    OUT kinds   smallint[],
    OUT answers jsonb[]
)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    claimed_callers bigint[];
    claimed_keys    text[];
BEGIN
    -- Claims each distinct key once, for its first bid in the batch. A key another transaction
    -- holds makes this wait for that transaction's end.
    WITH claim AS (
        INSERT INTO idempotency_keys AS t (caller_id, key, request_hash)
        SELECT DISTINCT ON (u.c, u.k) u.c, u.k, u.h
          FROM unnest(p_callers, p_keys, p_hashes) WITH ORDINALITY AS u(c, k, h, o)
         WHERE u.k IS NOT NULL
         ORDER BY u.c, u.k, u.o
        ON CONFLICT (caller_id, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, answer = NULL, created_at = now()
            WHERE t.created_at <= now() - interval '24 hours'
        RETURNING t.caller_id, t.key
    )
    SELECT array_agg(claim.caller_id), array_agg(claim.key)
      INTO claimed_callers, claimed_keys
      FROM claim;

    -- A new statement, so it sees what the transactions waited for committed.
    SELECT array_agg(x.kind ORDER BY x.o), array_agg(x.answer ORDER BY x.o)
      INTO kinds, answers
      FROM (
        SELECT u.o,
               (CASE
                    WHEN u.k IS NULL THEN 0
                    WHEN cl.c IS NOT NULL AND u.o = f.first_o THEN 0
                    WHEN t.request_hash IS DISTINCT FROM u.h THEN 2
                    WHEN cl.c IS NOT NULL THEN 3
                    ELSE 1
                END)::smallint AS kind,
               CASE WHEN cl.c IS NULL AND t.request_hash = u.h THEN t.answer END AS answer
          FROM unnest(p_callers, p_keys, p_hashes) WITH ORDINALITY AS u(c, k, h, o)
          LEFT JOIN unnest(claimed_callers, claimed_keys) AS cl(c, k)
                 ON cl.c = u.c AND cl.k = u.k
          LEFT JOIN (SELECT v.c, v.k, min(v.o) AS first_o
                       FROM unnest(p_callers, p_keys) WITH ORDINALITY AS v(c, k, o)
                      WHERE v.k IS NOT NULL
                      GROUP BY v.c, v.k) AS f
                 ON f.c = u.c AND f.k = u.k
          LEFT JOIN idempotency_keys AS t
                 ON t.caller_id = u.c AND t.key = u.k
      ) AS x;
END
$$;

-- Stores the answers of the keyed bids a batch decided.
CREATE FUNCTION gavel_store_answers(p_callers bigint[], p_keys text[], p_answers jsonb[])
RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    UPDATE idempotency_keys AS t SET answer = d.a
      FROM unnest(p_callers, p_keys, p_answers) AS d(c, k, a)
     WHERE t.caller_id = d.c AND t.key = d.k;
END
$$;

DROP FUNCTION gavel_place_bids(bigint[], bigint[], numeric[]);

-- Decides a batch of bids, some of them with idempotency keys (p_keys[i] NULL: none).
-- replay: 0 decided now, 1 the stored answer of an earlier request with the same key and body,
-- 2 the key was used with another body (the other columns are then NULL).
-- Keys cost two statements per batch, not per key: all are claimed by one INSERT (in (caller_id,
-- key) order), sorted out by one SELECT, and the answers of those decided now stored by one UPDATE.
CREATE FUNCTION gavel_place_bids(
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
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n        integer := cardinality(p_auction_ids);
    keyed    boolean := cardinality(array_remove(p_keys, NULL)) > 0;
    i        integer;
    r        gavel_bid_answer;
    stored   jsonb;
    -- Per bid: 0 decide now, 1 replay answers[i], 2 key reused with another body,
    -- 3 same key and body as an earlier bid of this batch: replay its answer once decided.
    kind     smallint[] := array_fill(0::smallint, ARRAY[n]);
    answers  jsonb[]    := array_fill(NULL::jsonb, ARRAY[n]);
    -- The keyed bids decided now, whose answers are stored after the loop.
    done_callers bigint[] := '{}';
    done_keys    text[]   := '{}';
    done_answers jsonb[]  := '{}';
BEGIN
    IF cardinality(p_bidder_ids) <> n OR cardinality(p_amounts) <> n
       OR cardinality(p_callers) <> n OR cardinality(p_keys) <> n
       OR cardinality(p_hashes) <> n THEN
        RAISE EXCEPTION 'gavel_place_bids: arrays of different lengths';
    END IF;

    IF keyed THEN
        SELECT k.kinds, k.answers INTO kind, answers
          FROM gavel_sort_keys(p_callers, p_keys, p_hashes) AS k;
    END IF;

    FOR i IN
        SELECT s.i FROM generate_subscripts(p_auction_ids, 1) AS s(i)
         WHERE kind[s.i] = 0
         ORDER BY p_auction_ids[s.i], s.i
    LOOP
        IF p_keys[i] IS NULL THEN
            RETURN QUERY
                SELECT i, 0::smallint, b.*
                  FROM gavel_place_bid(p_auction_ids[i], p_bidder_ids[i], p_amounts[i]) AS b;
        ELSE
            SELECT * INTO r FROM gavel_place_bid(p_auction_ids[i], p_bidder_ids[i], p_amounts[i]);
            done_callers := array_append(done_callers, p_callers[i]);
            done_keys    := array_append(done_keys, p_keys[i]);
            done_answers := array_append(done_answers, to_jsonb(r));
            RETURN QUERY SELECT i, 0::smallint, (r).*;
        END IF;
    END LOOP;

    IF NOT keyed THEN
        RETURN;
    END IF;
    IF cardinality(done_keys) > 0 THEN
        PERFORM gavel_store_answers(done_callers, done_keys, done_answers);
    END IF;

    FOR i IN 1 .. n LOOP
        CONTINUE WHEN kind[i] = 0;
        IF kind[i] = 3 THEN
            SELECT d.a INTO stored
              FROM unnest(done_callers, done_keys, done_answers) AS d(c, k, a)
             WHERE d.c = p_callers[i] AND d.k = p_keys[i];
            answers[i] := stored;
            kind[i] := 1;
        END IF;
        IF kind[i] = 1 THEN
            IF answers[i] IS NULL THEN
                RAISE EXCEPTION 'gavel_place_bids: a key without its answer';
            END IF;
            r := jsonb_populate_record(NULL::gavel_bid_answer, answers[i]);
            RETURN QUERY SELECT i, 1::smallint, (r).*;
        ELSE
            r := NULL;
            RETURN QUERY SELECT i, 2::smallint, (r).*;
        END IF;
    END LOOP;
END
$$;

-- Creates an auction under an idempotency key; a replay renders the very same body from what it
-- returns.
CREATE FUNCTION gavel_create_auction(
    p_caller            bigint,
    p_key               text,
    p_hash              bytea,
    p_now               timestamptz,
    p_title             text,
    p_seller_id         bigint,
    p_start_price       numeric,
    p_min_increment     numeric,
    p_starts_at         timestamptz,
    p_ends_at           timestamptz,
    p_extension_seconds integer
)
RETURNS SETOF gavel_auction_answer
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    a auctions%ROWTYPE;
BEGIN
    SELECT * INTO c FROM gavel_claim_key(p_caller, p_key, p_hash);
    IF NOT c.claimed THEN
        IF c.same_request THEN
            RETURN QUERY SELECT * FROM gavel_stored_auction(c.answer, 1::smallint);
        ELSE
            RETURN QUERY SELECT * FROM gavel_stored_auction(NULL, 2::smallint);
        END IF;
        RETURN;
    END IF;
    INSERT INTO auctions (title, seller_id, start_price, min_increment, starts_at, ends_at,
                          extension_seconds)
    VALUES (p_title, p_seller_id, p_start_price, p_min_increment, p_starts_at, p_ends_at,
            p_extension_seconds)
    RETURNING * INTO a;
    UPDATE idempotency_keys k
       SET answer = jsonb_build_object('answered_at', p_now, 'auction', to_jsonb(a))
     WHERE k.caller_id = p_caller AND k.key = p_key;
    RETURN QUERY SELECT * FROM gavel_stored_auction(
        jsonb_build_object('answered_at', p_now, 'auction', to_jsonb(a)), 0::smallint);
END
$$;

-- Unpacks a stored auction answer into gavel_create_auction's columns.
CREATE FUNCTION gavel_stored_auction(p_answer jsonb, p_replay smallint)
RETURNS SETOF gavel_auction_answer
LANGUAGE sql STABLE AS $$
    SELECT p_replay, (p_answer ->> 'answered_at')::timestamptz, a.id, a.title, a.seller_id,
           a.start_price, a.min_increment, a.starts_at, a.ends_at, a.extension_seconds,
           a.current_price, a.leader_id, a.bid_count, a.created_at
      FROM jsonb_populate_record(NULL::auctions, p_answer -> 'auction') AS a
$$;

-- Deletes up to p_limit keys past their 24 hours, an hour late so that no request still deciding
-- near the boundary loses the row it is reading; SKIP LOCKED keeps two servers' sweeps (and keys
-- being taken over) from ever waiting on each other.
CREATE FUNCTION gavel_sweep_keys(p_limit integer)
RETURNS integer
LANGUAGE sql AS $$
    WITH doomed AS (
        SELECT caller_id, key FROM idempotency_keys
         WHERE created_at < now() - interval '25 hours'
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM idempotency_keys k USING doomed d
         WHERE k.caller_id = d.caller_id AND k.key = d.key
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;
