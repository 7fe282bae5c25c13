//! Docker-style random container names: `adjective_surname`.

const LEFT: [&str; 24] = [
    "admiring", "agitated", "bold", "brave", "clever", "dazzling", "eager", "elegant", "focused", "gifted", "happy",
    "jolly", "keen", "lucid", "modest", "nifty", "quirky", "relaxed", "serene", "sharp", "stoic", "tender", "vibrant",
    "zealous",
];
const RIGHT: [&str; 24] = [
    "albattani",
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "einstein",
    "euler",
    "fermi",
    "galileo",
    "hopper",
    "johnson",
    "kepler",
    "lovelace",
    "meitner",
    "newton",
    "noether",
    "pasteur",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "wozniak",
    "yalow",
    "zhukovsky",
];

/// A random name; `attempt` > 0 appends a number, as Docker does after a collision.
pub fn random(attempt: u32) -> String {
    let id = berth_types::new_id();
    let n = u64::from_str_radix(&id[..12], 16).unwrap_or(0);
    let name = format!("{}_{}", LEFT[(n % 24) as usize], RIGHT[((n / 24) % 24) as usize]);
    if attempt == 0 {
        name
    } else {
        format!("{name}{}", n % 10)
    }
}
