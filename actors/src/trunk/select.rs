//! Gateway selection (sans-IO): the order in which a new call tries a trunk's gateways under
//! each [`GatewayStrategy`]. Gateways marked down are left out.

use switchboard_engine::config::GatewayStrategy;

/// What selection reads of one gateway.
#[derive(Clone, Copy, Debug)]
pub struct View {
    /// Up (probes answer, or probing is off).
    pub up: bool,
    /// Calls in progress through it.
    pub active: u32,
    /// Weight (`weighted`).
    pub weight: u32,
    /// Priority (`priority`, lower first).
    pub priority: u32,
}

/// The gateways to try, in order. `turn` is the trunk's round-robin counter (advanced here);
/// `draw` a random number for `weighted`.
pub fn order(strategy: GatewayStrategy, gws: &[View], turn: &mut usize, draw: u64) -> Vec<usize> {
    let mut up: Vec<usize> = (0..gws.len()).filter(|&i| gws[i].up).collect();
    match strategy {
        GatewayStrategy::Priority => up.sort_by_key(|&i| (gws[i].priority, i)),
        GatewayStrategy::LeastCalls => up.sort_by_key(|&i| (gws[i].active, gws[i].priority, i)),
        GatewayStrategy::RoundRobin => {
            if !up.is_empty() {
                let k = *turn % up.len();
                *turn = turn.wrapping_add(1);
                up.rotate_left(k);
            }
        }
        GatewayStrategy::Weighted => {
            // Draw without replacement, each pick in proportion to the weights left.
            let mut out = Vec::with_capacity(up.len());
            let mut x = draw;
            while !up.is_empty() {
                let total: u64 = up.iter().map(|&i| u64::from(gws[i].weight.max(1))).sum();
                let mut r = x % total;
                x = x.rotate_left(17).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d;
                let pos = up
                    .iter()
                    .position(|&i| {
                        let w = u64::from(gws[i].weight.max(1));
                        if r < w {
                            true
                        } else {
                            r -= w;
                            false
                        }
                    })
                    .unwrap_or(0);
                out.push(up.remove(pos));
            }
            up = out;
        }
    }
    up
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(up: bool, active: u32, weight: u32, priority: u32) -> View {
        View {
            up,
            active,
            weight,
            priority,
        }
    }

    #[test]
    fn strategies() {
        let g = [v(true, 3, 1, 2), v(false, 0, 1, 0), v(true, 1, 3, 1)];
        let mut turn = 0;
        assert_eq!(order(GatewayStrategy::Priority, &g, &mut turn, 0), [2, 0]);
        assert_eq!(order(GatewayStrategy::LeastCalls, &g, &mut turn, 0), [2, 0]);
        assert_eq!(order(GatewayStrategy::RoundRobin, &g, &mut turn, 0), [0, 2]);
        assert_eq!(order(GatewayStrategy::RoundRobin, &g, &mut turn, 0), [2, 0]);
        assert_eq!(order(GatewayStrategy::RoundRobin, &g, &mut turn, 0), [0, 2]);
        let mut first = [0u32; 3];
        for d in 0..4000u64 {
            let o = order(
                GatewayStrategy::Weighted,
                &g,
                &mut turn,
                d.wrapping_mul(2654435761),
            );
            assert_eq!(o.len(), 2);
            first[o[0]] += 1;
        }
        assert_eq!(first[1], 0, "a down gateway is never chosen");
        assert!(first[2] > 2 * first[0], "weight 3 vs 1: {first:?}");
        let down = [v(false, 0, 1, 0)];
        assert!(order(GatewayStrategy::Priority, &down, &mut turn, 0).is_empty());
    }
}
