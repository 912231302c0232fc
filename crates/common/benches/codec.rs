//! Codec benchmark: Avro (Confluent framing) vs serde_json on the same `OrderPlaced`, in one run.
//!
//! `cargo bench -p eventline-common --bench codec` prints events per second on one core for
//! encode and decode, and the ratio Avro / JSON (above 1.0 means Avro is faster).

use std::hint::black_box;
use std::time::{Duration, Instant};

use eventline_common::avro::{self, SchemaId};
use eventline_common::catalog::Catalog;
use eventline_common::events::{samples, OrderPlaced};

const ROUNDS: usize = 5;
const BATCH: usize = 200_000;

fn rate(mut f: impl FnMut()) -> f64 {
    // Warm up, then take the best of several rounds (least disturbed by the other core).
    for _ in 0..BATCH / 10 {
        f();
    }
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        best = best.min(started.elapsed());
    }
    BATCH as f64 / best.as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let catalog = Catalog::embedded()?;
    let schema =
        catalog.event("OrderPlaced").map(|e| e.schema.clone()).ok_or_else(|| anyhow::anyhow!("no OrderPlaced"))?;
    let order = samples::order_placed("0b5c1d9e-6f1a-4a63-9a43-5c2f4f7c0f11");
    let avro_bytes = avro::encode(SchemaId(1), &schema, &order)?;
    let json_bytes = serde_json::to_vec(&order)?;
    let body = &avro_bytes[avro::HEADER_LEN..];

    let avro_encode = rate(|| {
        black_box(avro::encode(SchemaId(1), &schema, black_box(&order)).ok());
    });
    let json_encode = rate(|| {
        black_box(serde_json::to_vec(black_box(&order)).ok());
    });
    let avro_decode = rate(|| {
        black_box(avro::decode::<OrderPlaced>(black_box(body), &schema, None).ok());
    });
    let json_decode = rate(|| {
        black_box(serde_json::from_slice::<OrderPlaced>(black_box(&json_bytes)).ok());
    });

    println!("codec benchmark: OrderPlaced with 3 lines, one core, best of {ROUNDS} rounds of {BATCH}");
    println!("size: avro {} bytes (incl. 5-byte header), json {} bytes", avro_bytes.len(), json_bytes.len());
    println!("{:<8} {:>14} {:>14} {:>12}", "op", "avro ev/s", "json ev/s", "avro/json");
    println!("{:<8} {:>14.0} {:>14.0} {:>12.2}", "encode", avro_encode, json_encode, avro_encode / json_encode);
    println!("{:<8} {:>14.0} {:>14.0} {:>12.2}", "decode", avro_decode, json_decode, avro_decode / json_decode);
    Ok(())
}
