//! `PageSet`: the newest image of every page a run of transactions wrote, and the database
//! size after the last of them. Applying it moves a database from one transaction boundary to
//! another.

use std::collections::BTreeMap;

/// Page images keyed by page number, plus the size the database has after them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PageSet {
    /// Page number to image; every image is `page_size` bytes.
    pub(crate) pages: BTreeMap<u32, Vec<u8>>,
    /// The database size in pages after the last transaction.
    pub(crate) db_pages: u32,
}

impl PageSet {
    /// Adds a later transaction's pages over this set's.
    pub(crate) fn merge(&mut self, later: PageSet) {
        self.pages.extend(later.pages);
        self.db_pages = later.db_pages;
        // Pages past the new end are gone; keeping them would resurrect them on apply.
        let end = self.db_pages;
        self.pages.retain(|p, _| *p <= end);
    }

    /// The bytes of page data held.
    pub(crate) fn bytes(&self) -> usize {
        self.pages.values().map(Vec::len).sum()
    }
}
