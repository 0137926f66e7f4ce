//! A hello-world lambda_http function: the baseline that `cargo xtask init-time` and `cargo xtask bench` compare every function with.

use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_request: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
