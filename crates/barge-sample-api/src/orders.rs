//! A commerce API's orders: the shapes real APIs send and a fixed-type column does not take
//! as is. Money as exact decimals (some sent as strings, some beyond `f64`'s precision), UUIDs,
//! RFC 3339 times with various offsets, naive timestamps, dates, times of day, epoch
//! milliseconds, a nested customer with a nested address, tag arrays (some empty), integer
//! arrays with a null element, line items as an array of objects, optional fields and nulls.
//!
//! Every value is a pure function of the order's number, so a test compares every loaded row
//! with [`orders`], the source of truth.

use serde_json::{Map, Number, Value, json};

/// How many orders `GET /orders` serves.
pub const ORDER_COUNT: i64 = 60;

/// A well-mixed 64-bit value of `n` and `salt` (SplitMix64's finaliser): deterministic variety
/// without a random generator.
fn mix(n: i64, salt: u64) -> u64 {
    let mut z = (n as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A JSON number with exactly this text (serde_json keeps it: `arbitrary_precision`).
fn number(text: &str) -> Value {
    Value::Number(text.parse::<Number>().expect("a JSON number's text"))
}

/// Order `n`'s id: a version-4-shaped UUID in its canonical (lower-case, hyphenated) form.
fn uuid(n: i64) -> String {
    let (high, low) = (mix(n, 1), mix(n, 2));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xfff,
        0x8000 | (low >> 48) & 0x3fff,
        low & 0xffff_ffff_ffff
    )
}

/// Order `n`'s amount: a number with two decimals, the same as a string, a whole number, or
/// (orders 7 and 30) one with more digits than `f64` keeps.
fn amount(n: i64) -> Value {
    let cents = mix(n, 3) % 100_000;
    let text = format!("{}.{:02}", cents / 100, cents % 100);
    match n {
        7 => number("123456789012345678.90"),
        30 => Value::String("98765432109876543210.12".into()),
        _ => match n % 4 {
            0 => Value::String(text),
            1 => number(&text),
            2 => number(&(cents / 100).to_string()),
            _ => number(&format!("{}.{}", cents / 100, cents % 10)),
        },
    }
}

/// When order `n` was placed: RFC 3339 with an offset of `+02:00`, `Z` or `-05:30`, some with
/// milliseconds.
fn created_at(n: i64) -> String {
    let day = 1 + n % 28;
    let (hour, minute, second) = (n % 24, (n * 7) % 60, (n * 13) % 60);
    let fraction = if n % 5 == 0 { ".250" } else { "" };
    let offset = ["+02:00", "Z", "-05:30"][(n % 3) as usize];
    format!("2026-03-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{offset}")
}

/// Order `n`'s customer: an integer id, an e-mail, and an address (left out for every
/// eleventh customer).
fn customer(n: i64) -> Value {
    let id = 1_000 + n % 17;
    let mut customer = json!({ "id": id, "email": format!("customer{id}@example.com") });
    if n % 11 != 0 {
        let cities = [
            ("Berlin", "10115", "DE"),
            ("Lyon", "69001", "FR"),
            ("Pune", "411001", "IN"),
        ];
        let (city, postcode, country) = cities[(n % 3) as usize];
        customer["address"] = json!({ "city": city, "postcode": postcode, "country": country });
    }
    customer
}

/// Order number `n` (from 1): the record `GET /orders` serves.
pub fn order(n: i64) -> Value {
    let tags: &[&str] = match n % 4 {
        0 => &[],
        1 => &["gift"],
        2 => &["express", "fragile"],
        _ => &["bulk", "b2b", "net-30"],
    };
    let items: Vec<Value> = (1..=1 + n % 3)
        .map(|line| {
            json!({
                "sku": format!("SKU-{:04}", mix(n, 10 + line as u64) % 10_000),
                "quantity": 1 + (n + line) % 4,
                "unit_price": number(&format!("{}.{:02}", 1 + n % 50, (n * line) % 100)),
            })
        })
        .collect();
    let mut quantities: Vec<Value> = items.iter().map(|item| item["quantity"].clone()).collect();
    if n % 13 == 0 {
        quantities.push(Value::Null);
    }
    let mut order = Map::new();
    order.insert("id".into(), uuid(n).into());
    order.insert("number".into(), (100_000 + n).into());
    order.insert("amount".into(), amount(n));
    order.insert(
        "currency".into(),
        ["EUR", "USD", "INR"][(n % 3) as usize].into(),
    );
    order.insert("created_at".into(), created_at(n).into());
    order.insert(
        "updated_ms".into(),
        (1_772_000_000_000 + n * 3_600_123).into(),
    );
    order.insert("paid".into(), (n % 3 != 1).into());
    order.insert("customer".into(), customer(n));
    order.insert("tags".into(), json!(tags));
    order.insert("quantities".into(), quantities.into());
    order.insert("items".into(), items.into());
    order.insert(
        "delivery_date".into(),
        format!("2026-04-{:02}", 1 + n % 30).into(),
    );
    order.insert(
        "pickup_slot".into(),
        format!("{:02}:{:02}:00", 8 + n % 10, (n % 4) * 15).into(),
    );
    // Naive local time of the warehouse: no offset.
    let shipped = (n % 6 != 0).then(|| format!("2026-03-{:02}T17:{:02}:00", 2 + n % 27, n % 60));
    order.insert("shipped_at".into(), shipped.into());
    if n % 5 == 0 {
        order.insert("coupon".into(), format!("SPRING{n}").into());
    } else if n % 7 == 0 {
        order.insert("coupon".into(), Value::Null);
    }
    if n % 9 == 0 {
        order.insert(
            "note".into(),
            "leave at the door, \"back\" entrance ✓".into(),
        );
    }
    Value::Object(order)
}

/// Every order `GET /orders` serves, in order: the source of truth tests compare with.
pub fn orders() -> Vec<Value> {
    (1..=ORDER_COUNT).map(order).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_stable_and_carry_every_shape() {
        assert_eq!(orders(), orders());
        let all = orders();
        let ids: std::collections::HashSet<_> = all.iter().map(|o| o["id"].clone()).collect();
        assert_eq!(ids.len(), all.len(), "ids are unique");
        assert!(all.iter().all(|o| o["id"].as_str().unwrap().len() == 36));
        assert_eq!(order(7)["amount"].to_string(), "123456789012345678.90");
        assert_eq!(order(30)["amount"], "98765432109876543210.12");
        assert!(order(4)["amount"].is_string() && order(5)["amount"].is_number());
        assert_eq!(order(4)["tags"], json!([]));
        assert!(order(11)["customer"].get("address").is_none());
        assert_eq!(
            order(13)["quantities"].as_array().unwrap().last(),
            Some(&Value::Null)
        );
        assert_eq!(order(6)["shipped_at"], Value::Null);
        assert_eq!(
            (order(7)["coupon"].clone(), order(1).get("coupon")),
            (Value::Null, None)
        );
        assert_eq!(order(1)["created_at"], "2026-03-02T01:07:13Z");
        assert_eq!(order(5)["created_at"], "2026-03-06T05:35:05.250-05:30");
    }
}
