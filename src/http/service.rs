//! The application behind the layer, as the layer sees it.

use super::message::{HttpError, Request, Response};
use super::stream::OpenStream;

/// The application behind the layer. One instance serves one connection (created by the factory
/// given to [`serve`](super::serve) on the connection's worker), so its per-connection state needs
/// no locking. It must be `Send` all the same: a connection that parks continues in a new
/// coroutine, which may only be handed `Send` values (on the same worker).
pub trait Service {
    /// Answers a complete request.
    fn call(&mut self, req: &Request<'_>) -> Response;
    /// Renders an error the layer detected; the connection closes after it is written.
    fn error(&mut self, err: &HttpError) -> Response;
    /// Takes over the connection of the stream the last response opened
    /// ([`Response::stream`]), once its head and first bytes are written. Dropping the stream
    /// closes the connection, which is what a service that keeps no streams does.
    fn adopt(&mut self, stream: OpenStream) {
        drop(stream);
    }
}
