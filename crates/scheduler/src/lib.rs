//! The scheduler: binds pending pods to ready nodes. Filter and score are pure functions over a
//! snapshot of nodes and pods; a loop watches the API server and binds through `pods/binding`.
