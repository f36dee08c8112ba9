//! `kind = "generate"`: deterministic synthetic e-commerce data, written as CSV datasets.
//!
//! Three datasets under `output`: `customers`, `products` and `orders`, with the columns of the
//! reference pipeline. The same seed always gives the same data. Product popularity is skewed
//! (a few best sellers), order dates follow weekly and yearly seasons (weekends, November and
//! December sell more), and a configurable share of orders is dirty on purpose (missing
//! customer, negative quantity, unknown status, missing amount) for the quality checks to catch.
//!
//! Customers and orders are made in blocks of [`BLOCK_ROWS`], each from its own random
//! sequence derived from the seed and the block's number, on every core at once; the data
//! depends on the seed alone, not on how many cores made it.

use std::io::Write;
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use super::values::Templated;
use super::{Job, JobContext, JobError, Stage};
use crate::lake::{check_relative, Publication, Warehouse, Written};
use crate::simulate::Rng;

/// Fields of a `generate` task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    /// Warehouse folder of the three datasets, e.g. `raw` gives `raw/customers`, `raw/products`
    /// and `raw/orders`.
    pub output: String,
    /// Number of customers (default 1,000).
    #[serde(default = "default_customers")]
    pub customers: Templated<u64>,
    /// Number of products (default 200).
    #[serde(default = "default_products")]
    pub products: Templated<u64>,
    /// Number of orders (default 5,000).
    #[serde(default = "default_orders")]
    pub orders: Templated<u64>,
    /// Random seed (default 42).
    #[serde(default = "default_seed")]
    pub seed: Templated<u64>,
    /// Share of dirty orders, 0 to 1 (default 0.01).
    #[serde(default = "default_dirty")]
    pub dirty_fraction: Templated<f64>,
    /// Orders are dated over the `days` days ending the day before `end_date` (default 365).
    #[serde(default = "default_days")]
    pub days: Templated<u64>,
    /// `YYYY-MM-DD`; default: the run's logical date.
    pub end_date: Option<String>,
}

fn default_customers() -> Templated<u64> {
    Templated::Value(1_000)
}
fn default_products() -> Templated<u64> {
    Templated::Value(200)
}
fn default_orders() -> Templated<u64> {
    Templated::Value(5_000)
}
fn default_seed() -> Templated<u64> {
    Templated::Value(42)
}
fn default_dirty() -> Templated<f64> {
    Templated::Value(0.01)
}
fn default_days() -> Templated<u64> {
    Templated::Value(365)
}

pub struct Generate;

impl Job for Generate {
    const KIND: &'static str = "generate";
    type Config = GenerateConfig;
    type Output = Generated;

    fn validate(&self, config: &GenerateConfig, stage: Stage) -> Vec<String> {
        let mut problems = Vec::new();
        if !stage.defers(&config.output) && check_relative(&config.output).is_err() {
            problems.push(format!(
                "`output` must be a relative warehouse path, got `{}`",
                config.output
            ));
        }
        if !config.dirty_fraction.check(|f| (0.0..=1.0).contains(f)) {
            problems.push("`dirty_fraction` must be between 0 and 1".to_string());
        }
        for (name, value) in [
            ("customers", &config.customers),
            ("products", &config.products),
            ("days", &config.days),
        ] {
            if !value.check(|n| *n > 0) {
                problems.push(format!("`{name}` must be at least 1"));
            }
        }
        problems
    }

    async fn run(&self, config: GenerateConfig, ctx: JobContext) -> Result<Generated, JobError> {
        let spec = Spec {
            customers: config.customers.get("customers")?.max(1),
            products: config.products.get("products")?.max(1),
            orders: config.orders.get("orders")?,
            seed: config.seed.get("seed")?,
            dirty_fraction: config.dirty_fraction.get("dirty_fraction")?.clamp(0.0, 1.0),
            days: config.days.get("days")?.max(1),
            end_date: match &config.end_date {
                Some(text) => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
                    JobError::Config(format!("`end_date` must be YYYY-MM-DD, got `{text}`"))
                })?,
                None => ctx.logical_date.date_naive(),
            },
        };
        let warehouse = ctx.warehouse.clone();
        let output = config.output.clone();
        ctx.log.info(format!(
            "generating {} customers, {} products, {} orders into {output}/",
            spec.customers, spec.products, spec.orders
        ));
        let lineage = ctx.lineage.clone();
        let outputs =
            super::blocking(move || generate(&warehouse, &output, &spec, &lineage)).await?;
        Ok(outputs)
    }
}

struct Spec {
    customers: u64,
    products: u64,
    orders: u64,
    seed: u64,
    dirty_fraction: f64,
    days: u64,
    end_date: NaiveDate,
}

fn generate(
    warehouse: &Warehouse,
    output: &str,
    spec: &Spec,
    lineage: &super::Lineage,
) -> Result<Generated, JobError> {
    let mut rng = Rng::new(spec.seed);
    // The three tables are published together, or none if one fails.
    let mut publication = Publication::default();
    let out = &mut publication;
    let prices = write_table(warehouse, output, out, "products", spec.products, |w| {
        write_products(w, spec, &mut rng)
    })?;
    let customers = write_table(warehouse, output, out, "customers", spec.customers, |w| {
        write_customers(w, spec)
    })?;
    let orders = write_table(warehouse, output, out, "orders", spec.orders, |w| {
        write_orders(w, spec, &prices.value)
    })?;
    lineage.wrote_datasets(&publication.commit()?);
    Ok(Generated {
        customers: TableGenerated {
            rows: spec.customers,
            bytes: customers.bytes,
            dirty_rows: None,
        },
        products: TableGenerated { rows: spec.products, bytes: prices.bytes, dirty_rows: None },
        orders: TableGenerated {
            rows: spec.orders,
            bytes: orders.bytes,
            dirty_rows: Some(orders.value),
        },
        rows: spec.customers + spec.products + spec.orders,
        bytes: customers.bytes + prices.bytes + orders.bytes,
    })
}

/// The outputs of a `generate` task.
#[derive(Debug, Serialize)]
pub struct Generated {
    pub customers: TableGenerated,
    pub products: TableGenerated,
    pub orders: TableGenerated,
    pub rows: u64,
    pub bytes: u64,
}

/// One table `generate` wrote.
#[derive(Debug, Serialize)]
pub struct TableGenerated {
    pub rows: u64,
    pub bytes: u64,
    /// Rows made dirty on purpose (orders only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirty_rows: Option<u64>,
}

struct Table<T> {
    value: T,
    bytes: u64,
}

/// Writes `<output>/<name>/<new version>/<name>.csv` with `fill`, to be published with the
/// other tables.
fn write_table<T>(
    warehouse: &Warehouse,
    output: &str,
    publication: &mut Publication,
    name: &str,
    rows: u64,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<T>,
) -> Result<Table<T>, JobError> {
    let dataset = warehouse.dataset(&format!("{output}/{name}"))?;
    let pending = dataset.begin()?;
    let path = pending.dir().join(format!("{name}.csv"));
    let fail = |e: std::io::Error| JobError::Failed(format!("writing {}: {e}", path.display()));
    let file = std::fs::File::create(&path).map_err(fail)?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let value = fill(&mut writer).map_err(fail)?;
    writer.flush().map_err(fail)?;
    let bytes = file_size(&path);
    publication.add(pending, Written { rows, bytes, files: 1 });
    Ok(Table { value, bytes })
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

const FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Chris",
    "Karen",
    "Daniel",
    "Nancy",
    "Matthew",
    "Lisa",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "Paul",
    "Ashley",
];
const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
];
/// (city, state); big states come first and are drawn more often.
const CITIES: &[(&str, &str)] = &[
    ("Los Angeles", "CA"),
    ("San Francisco", "CA"),
    ("San Diego", "CA"),
    ("Houston", "TX"),
    ("Austin", "TX"),
    ("Dallas", "TX"),
    ("New York", "NY"),
    ("Buffalo", "NY"),
    ("Miami", "FL"),
    ("Orlando", "FL"),
    ("Chicago", "IL"),
    ("Philadelphia", "PA"),
    ("Pittsburgh", "PA"),
    ("Columbus", "OH"),
    ("Atlanta", "GA"),
    ("Charlotte", "NC"),
    ("Detroit", "MI"),
    ("Seattle", "WA"),
    ("Denver", "CO"),
    ("Boston", "MA"),
    ("Phoenix", "AZ"),
    ("Portland", "OR"),
    ("Nashville", "TN"),
    ("Minneapolis", "MN"),
    ("Las Vegas", "NV"),
];
/// (category, price range, product nouns).
const CATEGORIES: &[(&str, (f64, f64), &[&str])] = &[
    (
        "Electronics",
        (19.0, 1500.0),
        &["Headphones", "Laptop", "Smartphone", "Monitor", "Speaker", "Camera"],
    ),
    ("Clothing", (9.0, 250.0), &["T-Shirt", "Jacket", "Jeans", "Sneakers", "Dress", "Sweater"]),
    ("Home", (5.0, 600.0), &["Lamp", "Blender", "Rug", "Cookware Set", "Pillow", "Coffee Maker"]),
    (
        "Sports",
        (8.0, 900.0),
        &["Yoga Mat", "Bicycle", "Tennis Racket", "Dumbbells", "Running Shoes", "Tent"],
    ),
    ("Books", (4.0, 80.0), &["Novel", "Cookbook", "Biography", "Atlas", "Textbook", "Comic"]),
];
const ADJECTIVES: &[&str] =
    &["Classic", "Premium", "Eco", "Smart", "Compact", "Deluxe", "Pro", "Essential"];

fn write_products(w: &mut dyn Write, spec: &Spec, rng: &mut Rng) -> std::io::Result<Vec<f64>> {
    writeln!(w, "product_id,product_name,category,price,stock_quantity")?;
    let mut prices = Vec::with_capacity(spec.products as usize);
    for id in 1..=spec.products {
        let (category, (low, high), nouns) =
            CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize];
        // Log-uniform prices: many cheap items, a few expensive ones.
        let price = (low * (high / low).powf(rng.unit())).max(0.99);
        let price = (price * 100.0).round() / 100.0;
        prices.push(price);
        let name = format!("{} {}", *rng.pick(ADJECTIVES), *rng.pick(nouns));
        writeln!(w, "{id},{name} {id},{category},{price:.2},{}", rng.below(501))?;
    }
    Ok(prices)
}

/// Rows of customers and orders made from one random sequence (see the module comment).
const BLOCK_ROWS: u64 = 50_000;

/// Writes rows `1..=rows` in blocks of [`BLOCK_ROWS`], several blocks at a time on every core,
/// in order; `make` writes the rows of ids `first..=last` with the block's random sequence
/// and returns a count, summed over all blocks.
fn write_in_blocks(
    w: &mut dyn Write,
    rows: u64,
    salt: u64,
    seed: u64,
    make: impl Fn(u64, u64, &mut Rng, &mut Vec<u8>) -> u64 + Sync,
) -> std::io::Result<u64> {
    let blocks = rows.div_ceil(BLOCK_ROWS);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let make = &make;
    let mut total = 0;
    let mut next = 0;
    while next < blocks {
        let wave = next..(next + cores).min(blocks);
        let made: Vec<(Vec<u8>, u64)> = std::thread::scope(|scope| {
            let handles: Vec<_> = wave
                .clone()
                .map(|block| {
                    scope.spawn(move || {
                        let first = block * BLOCK_ROWS + 1;
                        let last = ((block + 1) * BLOCK_ROWS).min(rows);
                        let mut rng =
                            Rng::new(seed ^ salt ^ block.wrapping_mul(0xA24B_AED4_963E_E407));
                        let mut out = Vec::with_capacity(((last - first + 1) * 80) as usize);
                        let count = make(first, last, &mut rng, &mut out);
                        (out, count)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a generator thread panicked")).collect()
        });
        for (bytes, count) in made {
            w.write_all(&bytes)?;
            total += count;
        }
        next = wave.end;
    }
    Ok(total)
}

fn write_customers(w: &mut dyn Write, spec: &Spec) -> std::io::Result<()> {
    writeln!(
        w,
        "customer_id,email,first_name,last_name,city,state,registration_date,customer_segment"
    )?;
    let first_day = spec.end_date - Duration::days(3 * 365);
    write_in_blocks(w, spec.customers, 0xC057, spec.seed, |first, last, rng, out| {
        for id in first..=last {
            let first_name = *rng.pick(FIRST_NAMES);
            let last_name = *rng.pick(LAST_NAMES);
            // Skewed towards the first (largest) cities.
            let (city, state) =
                CITIES[(CITIES.len() as f64 * rng.unit().powf(1.6)) as usize % CITIES.len()];
            let registered = first_day + Duration::days(rng.below(3 * 365 - 1) as i64);
            let segment = match rng.unit() {
                u if u < 0.2 => "Premium",
                u if u < 0.7 => "Standard",
                _ => "Basic",
            };
            let (first_lower, last_lower) = (first_name.to_lowercase(), last_name.to_lowercase());
            let email = format!("{first_lower}.{last_lower}{id}@example.com");
            let _ = writeln!(
                out,
                "{id},{email},{first_name},{last_name},{city},{state},{registered},{segment}"
            );
        }
        0
    })?;
    Ok(())
}

/// Relative sales of a day: weekends and the end of the year sell more.
fn seasonality(day: NaiveDate) -> f64 {
    let weekly = if day.weekday().number_from_monday() >= 6 { 1.3 } else { 1.0 };
    let yearly = match day.month() {
        11 => 1.5,
        12 => 1.8,
        1 | 2 => 0.8,
        _ => 1.0,
    };
    weekly * yearly
}

/// Writes the orders; returns how many were made dirty.
fn write_orders(w: &mut dyn Write, spec: &Spec, prices: &[f64]) -> std::io::Result<u64> {
    writeln!(
        w,
        "order_id,customer_id,product_id,order_date,quantity,total_amount,status,payment_method"
    )?;
    write_in_blocks(w, spec.orders, 0x0DE5, spec.seed, |first, last, rng, out| {
        let mut dirty = 0;
        for id in first..=last {
            dirty += u64::from(write_order(out, id, spec, prices, rng));
        }
        dirty
    })
}

/// Writes order `id`; true if it was made dirty.
fn write_order(out: &mut Vec<u8>, id: u64, spec: &Spec, prices: &[f64], rng: &mut Rng) -> bool {
    let first_day = spec.end_date - Duration::days(spec.days as i64);
    let max_weight = 1.8 * 1.3;
    let date = loop {
        let day = first_day + Duration::days(rng.below(spec.days) as i64);
        if rng.unit() * max_weight <= seasonality(day) {
            break day;
        }
    };
    // Power-law popularity: low product and customer ids are drawn far more often.
    let product = (prices.len() as f64 * rng.unit().powf(2.5)) as usize % prices.len();
    let customer = 1 + (spec.customers as f64 * rng.unit().powf(1.4)) as u64 % spec.customers;
    let mut quantity: i64 = match rng.unit() {
        u if u < 0.6 => 1,
        u if u < 0.85 => 2,
        u if u < 0.95 => 3,
        _ => 4 + rng.below(3) as i64,
    };
    let mut status = match rng.unit() {
        u if u < 0.80 => "completed",
        u if u < 0.92 => "pending",
        _ => "cancelled",
    };
    let payment = match rng.unit() {
        u if u < 0.5 => "Credit Card",
        u if u < 0.8 => "PayPal",
        _ => "Debit Card",
    };
    let defect = (rng.unit() < spec.dirty_fraction).then(|| rng.below(4));
    match defect {
        Some(1) => quantity = -quantity,
        Some(2) => status = "unknown",
        _ => {}
    }
    let _ = write!(out, "{id},");
    if defect != Some(0) {
        let _ = write!(out, "{customer}");
    }
    let _ = write!(out, ",{},{date},{quantity},", product + 1);
    if defect != Some(3) {
        let _ = write!(out, "{:.2}", prices[product] * quantity as f64);
    }
    let _ = writeln!(out, ",{status},{payment}");
    defect.is_some()
}
