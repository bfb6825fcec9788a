//! Seeds 000 and 001, `Executor.submit`: the smallest complete use of a pool.
//!
//! ```python
//! with ThreadPoolExecutor(max_workers=1) as executor:
//!     future = executor.submit(pow, 323, 1235)
//!     print(future.result())
//! ```
//!
//! Python's `pow(323, 1235)` is an exact integer of 3099 digits. Rust has no
//! built-in big integer, so `pow` below multiplies in base 10^9 limbs and the
//! example prints the digit count and both ends of the number.
//!
//! What to observe: `submit` returns at once with a future; `result()` blocks
//! until the worker has computed the value. Leaving the block drops the pool,
//! which is `shutdown(wait=True)`, like leaving Python's `with`.

use concurrent_futures::ThreadPoolExecutor;

/// One limb holds nine decimal digits, so a limb times a `u32` base plus a
/// carry always fits in a `u64`.
const LIMB: u64 = 1_000_000_000;

/// `base ** exp` as exact decimal digits.
fn pow(base: u32, exp: u32) -> String {
    // Least significant limb first.
    let mut limbs: Vec<u64> = vec![1];
    for _ in 0..exp {
        let mut carry = 0;
        for limb in &mut limbs {
            let product = *limb * u64::from(base) + carry;
            *limb = product % LIMB;
            carry = product / LIMB;
        }
        while carry > 0 {
            limbs.push(carry % LIMB);
            carry /= LIMB;
        }
    }
    let mut digits = limbs.last().map(u64::to_string).unwrap_or_default();
    for limb in limbs.iter().rev().skip(1) {
        digits.push_str(&format!("{limb:09}"));
    }
    digits
}

/// Runs the example.
pub fn main() {
    let digits = {
        let executor = ThreadPoolExecutor::new(1).expect("one worker is a valid pool size");
        let future = executor
            .submit(|| pow(323, 1235))
            .expect("a pool that was never shut down accepts work");
        println!("submitted pow(323, 1235): {future:?}");
        future
            .into_result()
            .expect("pow neither panics nor gets cancelled")
    };
    println!(
        "pow(323, 1235) = {}...{} ({} digits)",
        &digits[..20],
        &digits[digits.len() - 20..],
        digits.len()
    );
}
