//! A link that heals itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::error::{LinkError, LinkFailure};
use super::link::{lock, spawn_on, Link};
use super::protocol::{ErrorOf, Observer, Protocol};
use crate::placement::WorkerId;

/// One worker's connection to one server. While the link is down, calls fail at once with
/// `Unavailable` and a single background coroutine on the worker reconnects with exponential
/// backoff; no call ever waits for it.
pub struct Client<P: Protocol> {
    inner: Arc<Inner<P>>,
}

struct Inner<P: Protocol> {
    cfg: P::Config,
    worker: WorkerId,
    link: Mutex<Option<Arc<Link<P>>>>,
    /// True while the reconnect coroutine runs, so there is only ever one.
    reconnecting: AtomicBool,
    /// Successful connections so far.
    generation: AtomicU64,
    last_error: Mutex<String>,
    observer: Option<Arc<dyn Observer>>,
}

impl<P: Protocol> Client<P> {
    /// Starts connecting in the background on `worker` and returns at once.
    pub fn start(
        cfg: P::Config,
        worker: WorkerId,
        observer: Option<Arc<dyn Observer>>,
    ) -> Client<P> {
        let client = Self::idle(cfg, worker, observer);
        client.inner.ensure_reconnecting();
        client
    }

    /// Connects before returning (for start-up, where a bad address or password should stop the
    /// process); later breaks heal in the background like `start`.
    pub fn start_connected(
        cfg: P::Config,
        worker: WorkerId,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<Client<P>, ErrorOf<P>> {
        let client = Self::idle(cfg, worker, observer);
        let link = client.inner.open()?;
        client.inner.generation.fetch_add(1, Ordering::AcqRel);
        // A break right after connecting may already have put a fresh link in place.
        lock(&client.inner.link).get_or_insert(link);
        Ok(client)
    }

    fn idle(cfg: P::Config, worker: WorkerId, observer: Option<Arc<dyn Observer>>) -> Client<P> {
        Client {
            inner: Arc::new(Inner {
                cfg,
                worker,
                link: Mutex::new(None),
                reconnecting: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                last_error: Mutex::new("not connected yet".into()),
                observer,
            }),
        }
    }

    /// Runs `f` on the healthy link, or fails at once with `Unavailable`; a failure is reported
    /// to the observer, and a link that broke under `f` starts a reconnection.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Link<P>) -> Result<T, ErrorOf<P>>,
    ) -> Result<T, ErrorOf<P>> {
        let r = self.live().and_then(|link| {
            let r = f(&link);
            if let Err(e) = &r {
                if P::abandons(e) {
                    link.abandon(format!("the server answered {e}"));
                }
            }
            if link.is_broken() {
                self.inner.ensure_reconnecting();
            }
            r
        });
        if let (Some(o), Err(e)) = (&self.inner.observer, &r) {
            o.failed(e.failure());
        }
        r
    }

    /// Whether a healthy link is in place right now (starts a reconnection if not).
    pub fn is_up(&self) -> bool {
        self.live().is_ok()
    }

    /// Counts successful (re)connections: a change tells callers that the server may have
    /// restarted in between, and lost what it held.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The current link, healthy or not, e.g. to read `in_flight` for metrics.
    pub fn connection(&self) -> Option<Arc<Link<P>>> {
        lock(&self.inner.link).clone()
    }

    /// The healthy link, or `Unavailable` with the last connection error (and a reconnection
    /// under way).
    fn live(&self) -> Result<Arc<Link<P>>, ErrorOf<P>> {
        let link = lock(&self.inner.link).clone();
        match link {
            Some(l) if !l.is_broken() => Ok(l),
            _ => {
                self.inner.ensure_reconnecting();
                let why = lock(&self.inner.last_error).clone();
                Err(LinkError::Unavailable(format!("reconnecting ({why})")).into())
            }
        }
    }
}

impl<P: Protocol> Inner<P> {
    /// A link whose break starts a reconnection, for as long as this client lives.
    fn open(self: &Arc<Self>) -> Result<Arc<Link<P>>, ErrorOf<P>> {
        let weak = Arc::downgrade(self);
        let on_break = Box::new(move |why: &str| {
            if let Some(inner) = weak.upgrade() {
                *lock(&inner.last_error) = format!("connection lost: {why}");
                inner.ensure_reconnecting();
            }
        });
        let r = Link::<P>::open(
            &self.cfg,
            self.worker,
            Some(on_break),
            self.observer.clone(),
        );
        if let Err(e) = &r {
            *lock(&self.last_error) = e.to_string();
        }
        r
    }

    fn ensure_reconnecting(self: &Arc<Self>) {
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        if let Err(e) = spawn_on::<P>(self.worker, "reconnect", move || reconnect_loop(weak)) {
            *lock(&self.last_error) = e.to_string();
            self.reconnecting.store(false, Ordering::Release);
        }
    }
}

/// Attempts at once, then after the protocol's shortest backoff, doubling up to its longest.
/// Holds the client only weakly between attempts, so dropping the client ends the loop.
fn reconnect_loop<P: Protocol>(weak: Weak<Inner<P>>) {
    let mut backoff = Duration::from_millis(P::LIMITS.reconnect_backoff_min_millis);
    let max = Duration::from_millis(P::LIMITS.reconnect_backoff_max_millis);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if let Ok(link) = inner.open() {
            let broke_already = link.is_broken();
            // Counted first, so that whoever uses the new link sees the new generation.
            let earlier = inner.generation.fetch_add(1, Ordering::AcqRel);
            // The first connection of a client is not a reconnect.
            if let (true, Some(o)) = (earlier > 0, &inner.observer) {
                o.reconnected();
            }
            *lock(&inner.link) = Some(link);
            inner.reconnecting.store(false, Ordering::Release);
            // A break between connecting and storing found `reconnecting` still set.
            if broke_already {
                inner.ensure_reconnecting();
            }
            return;
        }
        let worker = inner.worker;
        drop(inner);
        worker.sleep(backoff);
        backoff = (backoff * 2).min(max);
    }
}
