//! Coalescing: the requests of one worker that arrive while its statement is in flight wait and
//! go together in the next one. There is no timer: a request arriving on a quiet worker leaves at
//! once, and under load each statement carries what queued during the one before. Each request
//! still gets its own answer, and none is answered before the statement that decided it returned.

use super::StoreError;
use crate::lossy::{self, Offer, Refused, Take};
use crate::placement::WorkerId;
use may::sync::mpsc::{channel, Sender};
use std::io;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// How long past the database timeout a request waits for its answer. A request that arrives
/// while a statement is in flight waits for that one and then for its own, so on a slow database
/// it may give up (503, within API.md's second) before its statement is sent; the margin only
/// covers the common case of one statement. A request that gave up is dropped from its batch
/// before the statement is sent, so nothing is decided for a client that was told 503.
const REPLY_MARGIN_MILLIS: u64 = 100;

/// The coalescing coroutine's stack, in words: it only encodes parameters and decodes rows.
const COALESCER_STACK_WORDS: usize = 16 * 1024;

/// What a coalescer is for: its name in errors and logs, its bounds and its statement.
pub struct Spec {
    pub name: &'static str,
    /// Most requests in one statement.
    pub max_batch: usize,
    /// Requests waiting; past this a request gets a fast 503 instead of a place in a queue the
    /// database cannot drain within the request timeout anyway.
    pub max_queued: usize,
}

/// Runs one statement for a batch: one answer for each input, in order.
type Decide<I, O> = dyn Fn(&[I]) -> Result<Vec<O>, StoreError>;

struct Job<I, O> {
    input: I,
    reply: Sender<Result<O, StoreError>>,
    /// When the caller stops waiting: a job still queued then is never decided.
    deadline: Instant,
}

/// One worker's queue of requests of one kind, and the coroutine that drains it.
pub struct Coalescer<I, O> {
    /// Bounded by `Spec::max_queued`.
    jobs: Offer<Job<I, O>>,
    name: &'static str,
    wait: Duration,
    worker: WorkerId,
}

impl<I: Send + 'static, O: Send + 'static> Coalescer<I, O> {
    /// Starts the coalescing coroutine on `worker`; `decide` runs one statement for a batch and
    /// returns one answer for each input, in order.
    pub fn start<F>(
        spec: &Spec,
        worker: WorkerId,
        db_timeout: Duration,
        decide: F,
    ) -> io::Result<Self>
    where
        F: Fn(&[I]) -> Result<Vec<O>, StoreError> + Send + 'static,
    {
        let (jobs, rx) = lossy::queue(spec.max_queued);
        let max_batch = spec.max_batch;
        worker.spawn(spec.name, COALESCER_STACK_WORDS, move || {
            run(&rx, max_batch, &decide)
        })?;
        Ok(Coalescer {
            jobs,
            name: spec.name,
            wait: db_timeout + Duration::from_millis(REPLY_MARGIN_MILLIS),
            worker,
        })
    }

    /// Answers `input` in the next statement; returns once that statement has returned.
    pub fn submit(&self, input: I) -> Result<O, StoreError> {
        let (reply, answer) = channel();
        let job = Job {
            input,
            reply,
            deadline: Instant::now() + self.wait,
        };
        match self.jobs.offer(job) {
            Ok(()) => {}
            Err(Refused::Full) => {
                return Err(StoreError::Unavailable(format!(
                    "the {} queue is full",
                    self.name
                )))
            }
            Err(Refused::Closed) => return Err(self.stopped()),
        }
        // A timed-out wait resumes on may's timer thread: the handle brings it home.
        match self.worker.recv_timeout(&answer, self.wait) {
            Ok(answer) => answer,
            Err(RecvTimeoutError::Disconnected) => Err(self.stopped()),
            Err(RecvTimeoutError::Timeout) => Err(StoreError::Unavailable(format!(
                "no answer from the {} in time",
                self.name
            ))),
        }
    }

    fn stopped(&self) -> StoreError {
        StoreError::Unavailable(format!("the {} stopped", self.name))
    }
}

fn run<I, O>(jobs: &Take<Job<I, O>>, max_batch: usize, decide: &Decide<I, O>) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = jobs.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Some(job) => batch.push(job),
                None => break,
            }
        }
        debug_assert!(batch.len() <= max_batch);
        drop_expired(&mut batch, Instant::now());
        if !batch.is_empty() {
            answer(&mut batch, decide);
        }
    }
}

/// Removes the jobs whose callers have stopped waiting: deciding them would be wasted work, and
/// for a bid, an effect its client was told did not happen.
fn drop_expired<I, O>(batch: &mut Vec<Job<I, O>>, now: Instant) {
    batch.retain(|job| job.deadline > now);
}

/// Runs one batch and answers each of its requests; a failed statement decided nothing, so every
/// request in it gets the error (and may be retried).
fn answer<I, O>(batch: &mut Vec<Job<I, O>>, decide: &Decide<I, O>) {
    let (inputs, replies): (Vec<I>, Vec<_>) = batch.drain(..).map(|j| (j.input, j.reply)).unzip();
    let answers = decide(&inputs).and_then(|answers| {
        if answers.len() == replies.len() {
            Ok(answers)
        } else {
            Err(StoreError::internal(
                "a batch answered a different number of requests",
            ))
        }
    });
    match answers {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(deadline: Instant) -> Job<u8, u8> {
        let (reply, _answer) = channel();
        Job {
            input: 0,
            reply,
            deadline,
        }
    }

    #[test]
    fn jobs_whose_callers_gave_up_are_not_decided() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut batch = vec![
            job(now - ms(1)),
            job(now),
            job(now + ms(1)),
            job(now + ms(500)),
        ];
        drop_expired(&mut batch, now);
        let left: Vec<Instant> = batch.iter().map(|j| j.deadline).collect();
        assert_eq!(left, vec![now + ms(1), now + ms(500)]);
    }
}
