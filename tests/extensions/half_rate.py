"""A trivial baseline, in a module of its own: constant SGD at half the best decade rate."""
from lrrl.method_base import RANK_OTHER, BaselineMethod


class HalfBestRate(BaselineMethod):
    name, label = "half-sgd", "SGD at half the best decade rate"

    def first_phase(self, view):
        return [] if "sgd" in view.names else [
            view.spec("sgd", s, lr, optimizer="sgd") for lr in (1e-2, 1e-1, 1.0) for s in view.seeds]

    def second_phase(self, view):
        lr = view.state[self.name]["lr"] = view.best_decade("sgd") / 2
        return [view.spec(self.name, s, lr, optimizer="sgd") for s in view.seeds]

    def add_rows(self, view):
        lr = view.state[self.name]["lr"]
        view.row(RANK_OTHER, self.label, "half the best decade rate", view.by(self.name, [lr]), lr, "lr")
