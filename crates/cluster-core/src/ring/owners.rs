//! The replica iterator of [`HashRing::owners`].

use super::hash_ring::HashRing;
use crate::ids::NodeId;

/// Distinct nodes for a key, owner first; created by [`HashRing::owners`].
#[derive(Debug, Clone)]
pub struct Owners<'a> {
    ring: &'a HashRing,
    start: usize,
    walked: usize,
    remaining: usize,
}

impl<'a> Owners<'a> {
    pub(super) fn new(ring: &'a HashRing, start: Option<usize>, wanted: usize) -> Owners<'a> {
        Owners {
            ring,
            start: start.unwrap_or(0),
            walked: 0,
            remaining: if start.is_some() { wanted } else { 0 },
        }
    }

    fn point(&self, step: usize) -> usize {
        (self.start + step) % self.ring.point_count()
    }
}

impl<'a> Iterator for Owners<'a> {
    type Item = &'a NodeId;

    fn next(&mut self) -> Option<&'a NodeId> {
        let points = self.ring.point_count();
        while self.remaining > 0 && self.walked < points {
            let node = self.ring.point_node(self.point(self.walked));
            let repeat = (0..self.walked).any(|s| self.ring.point_node(self.point(s)) == node);
            self.walked += 1;
            if !repeat {
                self.remaining -= 1;
                return Some(&self.ring.nodes()[node as usize].id);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}
