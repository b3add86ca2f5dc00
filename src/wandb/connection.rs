//! GraphQL connections (`{edges {node}, pageInfo}`) as the reads receive them, and cursor
//! paging over them.

use serde::Deserialize;

/// A connection of `T` nodes. Lenient: missing `edges` read as none, `pageInfo` may be
/// absent (queries that do not page leave it out).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Connection<T> {
    #[serde(default = "Vec::new")]
    pub(crate) edges: Vec<Edge<T>>,
    #[serde(default)]
    pub(crate) page_info: Option<PageInfo>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Edge<T> {
    pub(crate) node: Option<T>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageInfo {
    pub(crate) has_next_page: bool,
    pub(crate) end_cursor: Option<String>,
}

impl<T> Connection<T> {
    /// The nodes, in order, skipping null ones.
    pub(crate) fn nodes(self) -> impl Iterator<Item = T> {
        self.edges.into_iter().filter_map(|e| e.node)
    }
}

/// Where cursor paging over a connection stands: the cursor to ask for next, or done.
#[derive(Debug, Default)]
pub(crate) struct Pager {
    cursor: Option<String>,
    done: bool,
}

impl Pager {
    /// The cursor for the next request; `None` for the first page.
    pub(crate) fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Takes in the page just fetched (`None` when the server had no connection) and gives
    /// its nodes. Paging ends after a missing page, the last page, or a page that hands back
    /// the cursor it was asked with (a server that ignores the cursor would loop for ever).
    pub(crate) fn advance<T>(&mut self, page: Option<Connection<T>>) -> impl Iterator<Item = T> {
        let next = page
            .as_ref()
            .and_then(|p| p.page_info.as_ref())
            .filter(|info| info.has_next_page)
            .and_then(|info| info.end_cursor.clone())
            .filter(|next| self.cursor.as_ref() != Some(next));
        self.done = next.is_none();
        self.cursor = next;
        page.into_iter().flat_map(Connection::nodes)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn page(value: serde_json::Value) -> Option<Connection<u32>> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn connections_read_leniently() {
        let c = page(json!({"edges": [{"node": 1}, {"node": null}, {"node": 3}]})).unwrap();
        assert!(c.page_info.is_none());
        assert_eq!(c.nodes().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(page(json!({})).unwrap().nodes().count(), 0);
        assert!(page(json!({"pageInfo": null})).unwrap().page_info.is_none());
    }

    #[test]
    fn pager_follows_cursors_until_the_last_or_a_repeated_one() {
        let more = |end| {
            let info = json!({"hasNextPage": true, "endCursor": end});
            json!({"edges": [{"node": 1}], "pageInfo": info})
        };
        let mut pager = Pager::default();
        assert_eq!(pager.cursor(), None);
        assert_eq!(pager.advance(page(more("a"))).count(), 1);
        assert_eq!((pager.cursor(), pager.is_done()), (Some("a"), false));
        assert_eq!(pager.advance(page(more("b"))).count(), 1);
        assert_eq!(pager.cursor(), Some("b"));
        assert_eq!(pager.advance(page(more("b"))).count(), 1);
        assert!(pager.is_done());

        let last = json!({"pageInfo": {"hasNextPage": false, "endCursor": "z"}});
        for end in [page(last), page(json!({})), None] {
            let mut pager = Pager::default();
            assert_eq!(pager.advance(end).count(), 0);
            assert!(pager.is_done());
        }
    }
}
